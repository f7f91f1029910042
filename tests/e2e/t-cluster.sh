#!/usr/bin/env bash
# Two nodes (E2E_TARGET=cluster only): one is killed (SIGKILL) in the middle of a chunked upload; the upload continues and completes through the other, and every image acknowledged before still pulls through it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=cluster-kill

if [[ "$E2E_TARGET" != cluster ]]; then
  skip "a node killed mid-push" "it needs two nodes (E2E_TARGET=cluster)"
  exit 0
fi
require_tools curl skopeo sha256sum jq || exit "$E2E_ABORTED"
ensure_test_images
start_registry_or_abort "$T/reg"
A="http://127.0.0.1:${CLUSTER_PORTS[0]}" B="http://127.0.0.1:${CLUSTER_PORTS[1]}"
W="$T/kill" && mkdir -p "$W"
V1=$(layout_digest v1)

check "skopeo pushes an image through the balancer" \
  skopeo copy --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REG/e2e/cluster/before:v1"

# 12 MiB of random data: the first 6 MiB acknowledged on node A, the rest sent through B.
head -c $((12 * 1024 * 1024)) /dev/urandom >"$W/blob"
head -c $((6 * 1024 * 1024)) "$W/blob" >"$W/first"
tail -c +$((6 * 1024 * 1024 + 1)) "$W/blob" >"$W/rest"
DIGEST="sha256:$(sha256sum "$W/blob" | cut -d' ' -f1)"
# upload PATH URL: the path of the upload Location in the headers file PATH.
upload_path() { tr -d '\r' <"$1" | awk -F': ' 'tolower($1) == "location" {print $2}' | sed 's|^https\?://[^/]*||'; }

curl -s -o /dev/null -D "$W/post" -X POST "$A/v2/e2e/cluster/blob/blobs/uploads/"
LOC=$(upload_path "$W/post")
check "node A starts an upload" test -n "$LOC"
check_eq "node A takes the first 6 MiB (202)" 202 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
      --data-binary "@$W/first" "$A$LOC")"

# A second PATCH trickles into node A, which is killed while it reads it.
curl -s -o /dev/null --limit-rate 200k -X PATCH -H 'Content-Type: application/octet-stream' \
  --data-binary "@$W/rest" "$A$LOC" &
TRICKLE=$!
sleep 2
kill -KILL "${CLUSTER_PIDS[0]}"
wait "${CLUSTER_PIDS[0]}" 2>/dev/null
wait "$TRICKLE" 2>/dev/null
pass "node A killed (SIGKILL) in the middle of a PATCH"

status_range() { curl -s -D - -o /dev/null "$B$LOC" | tr -d '\r' | awk -F': ' 'tolower($1) == "range" {print $2}'; }
check_eq "node B reports the acknowledged offset (Range 0-$((6 * 1024 * 1024 - 1)))" \
  "0-$((6 * 1024 * 1024 - 1))" "$(status_range)"
check_eq "node B takes the rest from there (202)" 202 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $((6 * 1024 * 1024))-$((12 * 1024 * 1024 - 1))" --data-binary "@$W/rest" "$B$LOC")"
SEP='?'; [[ "$LOC" == *\?* ]] && SEP='&'
check_eq "node B completes the upload with the whole blob's digest (201)" 201 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$B$LOC${SEP}digest=$DIGEST")"
check_eq "the blob reads back byte-identical through node B" "$DIGEST" \
  "sha256:$(curl -sL "$B/v2/e2e/cluster/blob/blobs/$DIGEST" | sha256sum | cut -d' ' -f1)"
check_eq "the image pushed before still pulls through node B" "$V1" \
  "$(skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:${CLUSTER_PORTS[1]}/e2e/cluster/before:v1" | sha256sum | sed 's/^/sha256:/; s/ .*//')"
