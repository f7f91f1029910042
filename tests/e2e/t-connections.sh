#!/usr/bin/env bash
# Connection hygiene: clients that open connections and never finish their request headers (a slowloris), and idle keep-alive connections, are closed after the header read timeout ([http] header_read_timeout, 3 s here), while a request on the same server still answers.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=connections

if [[ "$E2E_TARGET" != berth ]]; then
  skip "stalled connections are closed after the header read timeout" "registry:2 sets no header timeout by default; the cluster has nginx in front"
  exit 0
fi
require_tools python3 curl || exit "$E2E_ABORTED"
export BERTH_HTTP_HEADER_READ_TIMEOUT=3
start_registry_or_abort "$T/reg"

# 200 connections that never finish their headers, and one idle after a full request.
stalled_and_idle_are_closed() {
  python3 - "$REG_PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
stalled = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: e2e\r\nX-Slow: ")
    stalled.append(s)
idle = socket.create_connection(("127.0.0.1", port))
idle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: e2e\r\n\r\n")
if not idle.recv(4096).startswith(b"HTTP/1.1 200"):
    sys.exit("the full request did not get its answer")
time.sleep(5)
still_open = 0
for s in stalled + [idle]:
    s.settimeout(3)
    try:
        data = s.recv(1024)
        if data and not data.startswith(b"HTTP/1.1 408"):
            still_open += 1
    except (socket.timeout, TimeoutError):
        still_open += 1
    except ConnectionResetError:
        pass
print(f"{still_open} of {len(stalled) + 1} connections still open after 5 s")
sys.exit(1 if still_open else 0)
PY
}
check "200 stalled and 1 idle connection are closed after the 3 s header timeout" stalled_and_idle_are_closed
check_eq "the registry still answers" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$REG_URL/v2/")"
