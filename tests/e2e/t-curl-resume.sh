#!/usr/bin/env bash
# Chunked blob upload with curl where the registry is killed (SIGKILL) mid-upload and restarted: the upload must resume and complete.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=curl-resume

require_tools curl sha256sum || exit "$E2E_ABORTED"
start_registry_or_abort "$T/reg"

REPO=e2e/resume
W="$T/resume"
mkdir -p "$W"

# req METHOD URL [curl args...]: one request; sets CODE and HDRS (a file with the response headers),
# body in $W/body. Runs in this shell (not in check) because later requests need its Location.
HDRS="$W/headers"
req() {
  local method=$1 url=$2; shift 2
  CODE=$(curl -s -D "$HDRS" -o "$W/body" -w '%{http_code}' --max-time 60 -X "$method" "$url" "$@")
}
header() {
  tr -d '\r' <"$HDRS" | awk -F': ' -v n="$(tr 'A-Z' 'a-z' <<<"$1")" 'tolower($1) == n {print $2}'
}
# absolute LOCATION: the upload URL from the last response
location() {
  local loc
  loc=$(header Location)
  [[ -z "$loc" || "$loc" == http* ]] && echo "$loc" || echo "$REG_URL$loc"
}
with_param() {  # URL NAME=VALUE
  [[ "$1" == *\?* ]] && echo "$1&$2" || echo "$1?$2"
}
detail() { { echo "HTTP $CODE"; cat "$HDRS" "$W/body" 2>/dev/null | tail -n 12; } | sed "s/^/#   /"; }

# 3 MiB + 123 bytes of random data, split into two chunks
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$W/blob"
TOTAL=$(stat -c %s "$W/blob")
N=$((2 * 1024 * 1024))
head -c "$N" "$W/blob" >"$W/chunk1"
tail -c +"$((N + 1))" "$W/blob" >"$W/chunk2"
DIGEST="sha256:$(sha256_of "$W/blob")"

req POST "$REG_URL/v2/$REPO/blobs/uploads/"
check_eq "POST starts an upload (202)" 202 "$CODE" || detail
LOC=$(location)
[[ -n "$LOC" ]] || abort "POST gave a Location" "$(detail)"

req PATCH "$LOC" -H 'Content-Type: application/octet-stream' -H "Content-Range: 0-$((N - 1))" \
  --data-binary "@$W/chunk1"
check_eq "PATCH chunk 1 with Content-Range (202)" 202 "$CODE" || detail
check_eq "PATCH chunk 1 answers Range: 0-$((N - 1))" "0-$((N - 1))" "$(header Range)"
[[ -n "$(location)" ]] && LOC=$(location)

# kill -9 the registry mid-upload and start it again on the same data dir and port
stop_registry KILL
pass "registry killed with SIGKILL mid-upload"
start_registry_or_abort "$REG_DIR" "$REG_PORT"
pass "registry restarted on the same data dir and port"

req GET "$LOC"
check_eq "GET upload status after restart (204)" 204 "$CODE" || detail
check_eq "upload status keeps Range: 0-$((N - 1))" "0-$((N - 1))" "$(header Range)"
[[ -n "$(location)" ]] && LOC=$(location)

req PATCH "$LOC" -H 'Content-Type: application/octet-stream' -H "Content-Range: $N-$((TOTAL - 1))" \
  --data-binary "@$W/chunk2"
check_eq "PATCH chunk 2 after restart (202)" 202 "$CODE" || detail
check_eq "PATCH chunk 2 answers Range: 0-$((TOTAL - 1))" "0-$((TOTAL - 1))" "$(header Range)"
[[ -n "$(location)" ]] && LOC=$(location)

req PUT "$(with_param "$LOC" "digest=$DIGEST")" -H 'Content-Type: application/octet-stream' -H 'Content-Length: 0'
check_eq "PUT ?digest= completes the upload (201)" 201 "$CODE" || detail
check_eq "PUT answers Docker-Content-Digest" "$DIGEST" "$(header Docker-Content-Digest)"

req HEAD "$REG_URL/v2/$REPO/blobs/$DIGEST" -I
check_eq "HEAD blob answers Content-Length $TOTAL" "$TOTAL" "$(header Content-Length)"
check "GET blob returns the same bytes (sha256)" \
  cmp "$W/blob" <(curl -fsS --max-time 60 -L "$REG_URL/v2/$REPO/blobs/$DIGEST")

exit 0
