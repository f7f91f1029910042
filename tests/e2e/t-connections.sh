#!/usr/bin/env bash
# Connection hygiene: clients that never finish their request headers (a slowloris) and idle keep-alive connections are closed after the header read timeout; an idle timeout closes quiet connections sooner; a request body that sends nothing for the body idle timeout is dropped (the upload resumes) while a slow but moving one is never cut; connections beyond the cap are answered 503, logged and counted.
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
check "/metrics counts the connections closed by the header timeout" \
  bash -c "curl -s '$REG_URL/metrics' | awk '\$1==\"berth_connections_header_timeouts_total\" && \$2>=200 {ok=1} END {exit !ok}'"

# A client that stops reading a download for longer than the header timeout is not waiting
# for its next request: only the idle timeout (60 s here) may close it.
stalled_reader_is_not_cut() {
  head -c 33554432 /dev/urandom >"$T/big"
  local digest loc
  digest="sha256:$(sha256sum "$T/big" | cut -d' ' -f1)"
  loc=$(curl -s -D - -o /dev/null -X POST "$REG_URL/v2/e2e/download/blobs/uploads/" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$T/big" "$REG_URL${loc#"$REG_URL"}?digest=$digest")" == 201 ]] || return 1
  python3 - "$REG_PORT" "$digest" <<'PY'
import hashlib, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(f"GET /v2/e2e/download/blobs/{sys.argv[2]} HTTP/1.1\r\nHost: e2e\r\n\r\n".encode())
time.sleep(5)  # the server's writes block: longer than the 3 s header timeout
s.settimeout(10)
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
while len(body) < length:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    body += chunk
print(f"{len(body)} of {length} bytes after a 5 s pause")
sys.exit(0 if len(body) == length and "sha256:" + hashlib.sha256(body).hexdigest() == sys.argv[2] else 1)
PY
}
check "a download whose client stops reading for 5 s (header timeout 3 s) is not cut" stalled_reader_is_not_cut

# The other limits, on a registry of their own: an idle timeout (2 s) well below the header
# read timeout (30 s), a request body idle timeout (2 s) and a cap of 8 connections.
stop_registry
(
  export BERTH_HTTP_HEADER_READ_TIMEOUT=30 BERTH_HTTP_IDLE_TIMEOUT=2 BERTH_HTTP_BODY_IDLE_TIMEOUT=2 \
    BERTH_HTTP_MAX_CONNECTIONS=8
  start_registry "$T/limits" >"$T/limits.msg" 2>&1 && echo "$REG_PID $REG_PORT" >"$T/limits.pid"
) || abort "start the registry with connection limits" "$(cat "$T/limits.msg")"
read -r REG_PID REG_PORT <"$T/limits.pid"
REG_PIDS+=("$REG_PID")
REG_URL="http://127.0.0.1:$REG_PORT"

idle_keepalive_is_closed() {
  python3 - "$REG_PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: e2e\r\n\r\n")
assert s.recv(4096).startswith(b"HTTP/1.1 200")
started = time.time()
s.settimeout(10)
try:
    rest = s.recv(4096)
except ConnectionResetError:
    rest = b""
waited = time.time() - started
print(f"idle connection closed after {waited:.1f} s")
sys.exit(0 if rest == b"" and 1.5 <= waited <= 5 else 1)
PY
}
check "an idle keep-alive connection is closed after the 2 s idle timeout (not the 30 s header timeout)" idle_keepalive_is_closed

cap_answers_503() {
  python3 - "$REG_PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
for s in held:
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: e2e\r\n")  # headers never finished
time.sleep(0.3)  # each is counted when its task first runs, not in the kernel's accept order
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
extra.sendall(b"GET /v2/ HTTP/1.1\r\nHost: e2e\r\n\r\n")
answer = extra.recv(4096).decode(errors="replace")
print(answer)
assert answer.startswith("HTTP/1.1 503"), "the 9th connection was not answered 503"
assert "UNAVAILABLE" in answer and "too many connections" in answer
assert extra.recv(4096) == b"", "the refused connection is closed"
for s in held:
    s.close()
PY
}
check "the 9th connection over a cap of 8 is answered 503 and closed" cap_answers_503
check_eq "after the held connections close, requests are served again" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$REG_URL/v2/")"
check "the refusal is logged" grep -q "too many connections" "$T/limits/registry.log"

new_session() {
  curl -s -D - -o /dev/null -X POST "$REG_URL/v2/e2e/limits/blobs/uploads/" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}'
}
stalled_body_is_dropped_and_resumable() {
  local loc
  loc=$(new_session)
  loc=${loc#"$REG_URL"}
  head -c 65536 /dev/urandom >"$T/limits/blob"
  python3 - "$REG_PORT" "$loc" <<'PY' || return 1
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall((f"PATCH {sys.argv[2]} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/octet-stream\r\n"
           "Content-Length: 1048576\r\n\r\n").encode() + b"x" * 65536)
started = time.time()
s.settimeout(15)
answer = s.recv(4096).decode(errors="replace")
waited = time.time() - started
print(f"after {waited:.1f} s: {answer.splitlines()[0] if answer else 'closed'}")
sys.exit(0 if 1.5 <= waited <= 6 and (answer == "" or answer.startswith("HTTP/1.1 400")) else 1)
PY
  local digest
  digest="sha256:$(sha256sum "$T/limits/blob" | cut -d' ' -f1)"
  # Where the stalled PATCH left it (nothing): the whole blob in one PATCH, then the PUT.
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
    -H 'Content-Range: 0-65535' --data-binary "@$T/limits/blob" "$REG_URL$loc")" == 202 ]] || return 1
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$REG_URL$loc?digest=$digest")" == 201 ]]
}
check "a request body that sends nothing for 2 s is dropped, and the upload resumes" stalled_body_is_dropped_and_resumable

slow_moving_body_is_never_cut() {
  local loc
  loc=$(new_session)
  loc=${loc#"$REG_URL"}
  python3 - "$REG_PORT" "$loc" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall((f"PATCH {sys.argv[2]} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/octet-stream\r\n"
           "Content-Length: 7168\r\n\r\n").encode())
for _ in range(7):  # 7 s in all, 1 KiB a second: slower than both 2 s timeouts, but moving
    s.sendall(b"y" * 1024)
    time.sleep(1)
s.settimeout(10)
answer = s.recv(4096).decode(errors="replace")
print(answer.splitlines()[0] if answer else "closed")
sys.exit(0 if answer.startswith("HTTP/1.1 202") and "range: 0-7167" in answer.lower() else 1)
PY
}
check "a slow but moving body (1 KiB/s for 7 s) is never cut" slow_moving_body_is_never_cut

limits_in_metrics() {
  curl -s "$REG_URL/metrics" >"$T/limits/metrics.txt"
  python3 - "$T/limits/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
values = {s.name: s.value for f in text_string_to_metric_families(open(sys.argv[1]).read()) for s in f.samples}
for name in ["berth_connections_rejected_total", "berth_connections_idle_closed_total",
             "berth_request_body_timeouts_total"]:
    print(name, values.get(name))
    assert values.get(name, 0) >= 1, name
PY
}
check "/metrics counts the refused, idle-closed and body-timed-out connections" limits_in_metrics
