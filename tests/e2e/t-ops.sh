#!/usr/bin/env bash
# Operations: /metrics parsed by Prometheus' own text parser, /healthz and /readyz (failing while the data directory is unwritable or full, recovering by itself), JSON logs carrying the request id (no colour codes, no secrets), a full disk answered 507 STORAGE_FULL with the partial upload cleaned and the push working again once space is freed, and graceful shutdown (a PATCH in flight finishes, new connections are refused; a PATCH cut at the deadline resumes after a restart).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=ops

if [[ "$E2E_TARGET" != berth ]]; then
  skip "metrics, health, full disk and shutdown" "berth's own operations surface"
  exit 0
fi
require_tools python3 curl mount umount chattr dd sha256sum || exit "$E2E_ABORTED"
python3 -c 'import prometheus_client.parser' 2>/dev/null \
  || abort "python prometheus_client is installed (scripts/install-deps.sh)"

# The data directory is a small filesystem of its own, so it can be filled and made read-only.
DATA="$T/reg/data"
mkdir -p "$DATA"
mount -t tmpfs -o size=48m tmpfs "$DATA" || abort "mount a 48 MiB tmpfs as the data directory"
# (lib.sh's cleanup unmounts anything left mounted under the temp dir.)

export BERTH_LOG_FORMAT=json BERTH_HTTP_SHUTDOWN_TIMEOUT=3
start_registry_or_abort "$T/reg"
LOG="$REG_DIR/registry.log"
W="$T/work"
mkdir -p "$W"

with_param() {  # URL NAME=VALUE
  [[ "$1" == *\?* ]] && echo "$1&$2" || echo "$1?$2"
}
# status URL [curl args...]: the HTTP status of one request
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@"; }

check_eq "/healthz answers 200" 200 "$(status "$REG_URL/healthz")"
check_eq "/readyz answers 200" 200 "$(status "$REG_URL/readyz")"

# Some traffic: a blob and a manifest pushed, pulled, and a 404.
push_small_image() {
  local repo=$1 config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
  local digest="sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)"
  local loc
  loc=$(curl -s -D - -o /dev/null -X POST "$REG_URL/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [[ "$loc" == http* ]] || loc="$REG_URL$loc"
  [[ "$(status -X PUT --data-binary "$config" -H 'Content-Type: application/octet-stream' "$(with_param "$loc" "digest=$digest")")" == 201 ]] || return 1
  local manifest
  manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}' "$digest" "${#config}")
  [[ "$(status -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" "$REG_URL/v2/$repo/manifests/v1")" == 201 ]] || return 1
  [[ "$(status "$REG_URL/v2/$repo/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json')" == 200 ]] || return 1
  [[ "$(status "$REG_URL/v2/$repo/manifests/missing")" == 404 ]]
}
check "a small image is pushed and pulled" push_small_image e2e/ops

# The scrape, parsed by prometheus_client's text parser (which rejects malformed exposition).
metrics_parse() {
  curl -s --max-time 10 "$REG_URL/metrics" >"$W/metrics.txt" || return 1
  python3 - "$W/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
families = {f.name: f for f in text_string_to_metric_families(text)}
def value(name, **labels):
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    sys.exit(f"no sample {name} {labels}")
assert families["berth_http_requests"].type == "counter", families["berth_http_requests"].type
assert value("berth_http_requests_total", endpoint="manifest_put", status="201") >= 1
assert value("berth_http_requests_total", endpoint="manifest_get", status="200") >= 1
assert value("berth_http_requests_total", endpoint="manifest_get", status="404") >= 1
assert value("berth_http_requests_total", endpoint="upload_start", status="202") >= 1
hist = families["berth_http_request_duration_seconds"]
assert hist.type == "histogram", hist.type
buckets = [s for s in hist.samples if s.name.endswith("_bucket") and s.labels["endpoint"] == "manifest_put"]
counts = [s.value for s in buckets]
assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf", buckets
assert value("berth_http_request_duration_seconds_count", endpoint="manifest_put") == counts[-1]
assert value("berth_data_dir_free_bytes") > 0
assert value("berth_data_dir_size_bytes") <= 48 * 1024 * 1024
assert value("berth_db_pool_connections", pool="writer", state="max") == 1
for name in ["berth_connections_open", "berth_network_received_bytes", "berth_tokens_issued",
             "berth_auth_failures", "berth_gc_runs", "berth_gc_duration_seconds", "berth_uploads_in_flight",
             "berth_storage_full_errors", "berth_db_commits_waiting_for_sync"]:
    assert name in families, f"family {name} missing"
assert value("berth_connections_open") >= 1
# Usage from the database's counters: the registry's totals; no project names on the
# registry's own port (only on a metrics listener of its own).
assert value("berth_storage_registry_bytes", kind="linked_blobs") > 0
assert value("berth_storage_registry_bytes", kind="manifests") > 0
assert "berth_storage_project_bytes" not in families, "project names on the public /metrics"
print(f"{len(families)} families parsed")
PY
}
check "/metrics is Prometheus text (parsed by prometheus_client) with requests, latency, data dir, DB pool and storage usage" metrics_parse
check_eq "/metrics answers with the 0.0.4 text content type" "text/plain; version=0.0.4; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{content_type}' "$REG_URL/metrics")"

request_id_echoed() {
  curl -s -D - -o /dev/null -H 'X-Request-Id: e2e-trace-42' "$REG_URL/v2/" | tr -d '\r' | grep -qix 'x-request-id: e2e-trace-42' || return 1
  # Without one, the registry makes one up.
  curl -s -D - -o /dev/null "$REG_URL/v2/" | tr -d '\r' | grep -qiE '^x-request-id: [0-9a-f]{32}$'
}
check "X-Request-Id is echoed, or generated when the client sends none" request_id_echoed

# ---------------------------------------------------------------- unwritable data directory
# `chattr +i` stops even root from creating files in it (a read-only remount would be refused
# while the database is open for writing, and chmod does not stop root).
readyz_body() { curl -s --max-time 30 "$REG_URL/readyz"; }
metric() { curl -s "$REG_URL/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
chattr +i "$DATA" || abort "make the data directory immutable (chattr +i)"
check_eq "/readyz answers 503 while the data directory is unwritable" 503 "$(status "$REG_URL/readyz")"
readonly_named() { readyz_body | tee /dev/stderr | grep -q "is not writable"; }
check "/readyz says the data directory is not writable" readonly_named
check_eq "berth_data_dir_writable is 0" 0 "$(metric berth_data_dir_writable)"
chattr -i "$DATA" || abort "make the data directory writable again (chattr -i)"
check_eq "/readyz recovers by itself (200) once it is writable again" 200 "$(status "$REG_URL/readyz")"
check_eq "berth_data_dir_writable is 1 again" 1 "$(metric berth_data_dir_writable)"

# ---------------------------------------------------------------- full disk
head -c $((2 * 1024 * 1024)) /dev/urandom >"$W/blob"
BLOB_DIGEST="sha256:$(sha256_of "$W/blob")"
loc=$(curl -s -D - -o /dev/null -X POST "$REG_URL/v2/e2e/full/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
[[ "$loc" == http* ]] || loc="$REG_URL$loc"
UPLOAD=$(with_param "$loc" "digest=$BLOB_DIGEST")
# Fill the disk (dd stops at ENOSPC).
dd if=/dev/zero of="$DATA/filler" bs=1M >/dev/null 2>&1
full_push_named() {
  local code
  code=$(curl -s -o "$W/full.json" -w '%{http_code}' -X PUT -H 'X-Request-Id: e2e-full-disk-1' \
    -H 'Content-Type: application/octet-stream' --data-binary "@$W/blob" "$UPLOAD")
  cat "$W/full.json"; echo
  [[ "$code" == 507 ]] || { echo "HTTP $code, not 507"; return 1; }
  grep -q '"code":"STORAGE_FULL"' "$W/full.json" && grep -q "storage is full" "$W/full.json"
}
check "a push onto a full disk answers 507 STORAGE_FULL saying the storage is full" full_push_named
partial_cleaned() {
  # The upload area is cut back to what the session had acknowledged (nothing).
  local bytes
  bytes=$(find "$DATA" -path "$DATA/filler" -prune -o -type f -path '*upload*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  echo "upload areas hold $bytes bytes"
  [[ "$bytes" == 0 ]]
}
check "the partial upload is cleaned up" partial_cleaned
full_logged_with_request_id() {
  python3 - "$LOG" <<'PY'
import json, sys
hits = []
for line in open(sys.argv[1]):
    entry = json.loads(line)
    if entry.get("status") == 507 and entry.get("request", {}).get("id") == "e2e-full-disk-1":
        hits.append(entry)
print(hits)
assert hits, "no 507 log line with the request id"
assert "storage is full" in hits[0]["message"] and "No space left" in hits[0]["cause"], hits[0]
PY
}
check "the log has the 507 with its cause and the request id" full_logged_with_request_id
check_eq "/readyz answers 503 while the disk is full" 503 "$(status "$REG_URL/readyz")"
full_named_in_readyz() { readyz_body | tee /dev/stderr | grep -q "storage is full"; }
check "/readyz says the storage is full" full_named_in_readyz
full_in_metrics() {
  local free errors
  free=$(metric berth_data_dir_free_bytes); errors=$(metric berth_storage_full_errors_total)
  echo "free=$free errors=$errors"
  (( free < 1024 * 1024 )) && (( errors >= 1 ))
}
check "/metrics shows the free bytes near 0 and the storage-full error" full_in_metrics
rm -f "$DATA/filler"
check_eq "/readyz recovers by itself once space is freed" 200 "$(status "$REG_URL/readyz")"
check_eq "the same upload completes once space is freed (201)" 201 \
  "$(status -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$W/blob" "$UPLOAD")"
check_eq "and the blob reads back" "$BLOB_DIGEST" \
  "sha256:$(curl -s "$REG_URL/v2/e2e/full/blobs/$BLOB_DIGEST" | sha256sum | cut -d' ' -f1)"

# ---------------------------------------------------------------- logs
logs_are_clean_json() {
  # A password and a token sent by a client must never reach the log.
  curl -s -o /dev/null -u 'e2e-user:s3cret-pass-9f7' "$REG_URL/v2/"
  curl -s -o /dev/null -H 'Authorization: Bearer tok3n-e2e-4c1d' "$REG_URL/v2/"
  python3 - "$LOG" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
for line in lines:
    json.loads(line)
text = "\n".join(lines)
assert "\x1b[" not in text, "colour codes in a log that is not a terminal"
assert "s3cret-pass-9f7" not in text and "tok3n-e2e-4c1d" not in text, "a secret was logged"
print(f"{len(lines)} JSON lines")
PY
}
check "every log line is JSON, without colour codes or secrets" logs_are_clean_json

# ---------------------------------------------------------------- graceful shutdown
head -c $((8 * 1024 * 1024)) /dev/urandom >"$W/big"
BIG_DIGEST="sha256:$(sha256_of "$W/big")"
loc=$(curl -s -D - -o /dev/null -X POST "$REG_URL/v2/e2e/shutdown/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
SESSION_PATH=${loc#http://$REG}

# patch_during_sigterm PID FIRST_BYTE LAST_BYTE MODE: a PATCH of big[FIRST..LAST]; after 1 MiB
# the registry gets SIGTERM; MODE "finish" sends the rest at once (it must be answered 202 and
# a new connection must be refused meanwhile), "stall" sends nothing more (the deadline cuts it).
patch_during_sigterm() {
  python3 - "$REG_PORT" "$SESSION_PATH" "$W/big" "$1" "$2" "$3" "$4" <<'PY'
import os, signal, socket, sys, time
port, path, blob, pid, first, last, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
data = open(blob, "rb").read()[first:last + 1]
s = socket.create_connection(("127.0.0.1", int(port)))
s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/octet-stream\r\n"
           f"Content-Range: {first}-{last}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
s.sendall(data[:1024 * 1024])
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
time.sleep(0.5)
try:
    socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    sys.exit("a new connection was accepted during shutdown")
except OSError as e:
    print(f"new connection refused during shutdown: {e}")
if mode == "stall":
    s.settimeout(15)
    started = time.time()
    answer = s.recv(4096)
    print(f"stalled PATCH: connection ended after {time.time() - started:.1f} s with {answer[:40]!r}")
    sys.exit(0)
s.sendall(data[1024 * 1024:])
s.settimeout(15)
answer = s.recv(4096).decode(errors="replace")
print(answer.splitlines()[0] if answer else "no answer")
assert answer.startswith("HTTP/1.1 202"), answer
assert f"range: 0-{last}" in answer.lower(), answer
PY
}
exited_within() {  # SECONDS: the registry exits within that many seconds
  local i
  for i in $(seq $(($1 * 10))); do kill -0 "$REG_PID" 2>/dev/null || return 0; sleep 0.1; done
  echo "still running after $1 s"; return 1
}
check "SIGTERM: the PATCH in flight finishes (202) and new connections are refused" \
  patch_during_sigterm "$REG_PID" 0 $((4 * 1024 * 1024 - 1)) finish
check "the registry exits once the request in flight is done" exited_within 5
wait "$REG_PID" 2>/dev/null
start_registry_or_abort "$REG_DIR" "$REG_PORT"
check "SIGTERM: a PATCH stalled past the 3 s deadline is cut" \
  patch_during_sigterm "$REG_PID" $((4 * 1024 * 1024)) $((8 * 1024 * 1024 - 1)) stall
check "the registry exits at the shutdown deadline" exited_within 6
wait "$REG_PID" 2>/dev/null
start_registry_or_abort "$REG_DIR" "$REG_PORT"
check_eq "after a restart the upload is where its last complete PATCH left it" "0-$((4 * 1024 * 1024 - 1))" \
  "$(curl -s -D - -o /dev/null "$REG_URL$SESSION_PATH" | tr -d '\r' | awk -F': ' 'tolower($1)=="range"{print $2}')"
tail -c +$((4 * 1024 * 1024 + 1)) "$W/big" >"$W/big-rest"
check_eq "the upload resumes (PATCH 202)" 202 "$(status -X PATCH -H 'Content-Type: application/octet-stream' \
  -H "Content-Range: $((4 * 1024 * 1024))-$((8 * 1024 * 1024 - 1))" --data-binary "@$W/big-rest" "$REG_URL$SESSION_PATH")"
check_eq "and completes with the right digest (201)" 201 \
  "$(status -X PUT "$(with_param "$REG_URL$SESSION_PATH" "digest=$BIG_DIGEST")")"
stop_registry
umount "$DATA" 2>/dev/null || umount -l "$DATA"
