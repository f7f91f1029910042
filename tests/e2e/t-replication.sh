#!/usr/bin/env bash
# Replication through Harbor's /api/v2.0/replication API between two berths (token mode) and a registry:2: a multi-platform index with a cosign-style signature tag and an SBOM referrer goes berth → registry:2 (the referrer lands in the OCI tag schema there), registry:2 → berth (pulled into a namespace, the referrer indexed again), and berth → berth on push (event-based, the destination's project created through its API), deletes following; a run slowed by its speed limit is killed with kill -9 mid-blob and resumes after the restart, byte-identical.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=replication

# The cluster target runs it on PostgreSQL + S3: each berth here is one node with a database
# and a bucket of its own on the cluster's PostgreSQL and moto_server.
if [[ "$E2E_TARGET" == cluster ]]; then
  E2E_TARGET=berth
  export E2E_META=postgres E2E_STORAGE=s3
fi
[[ "${E2E_META:-}" == postgres ]] && E2E_GROUP=replication-pg
if [[ "$E2E_TARGET" != berth ]]; then
  skip "replication" "a berth feature"
  exit 0
fi

require_tools docker-registry skopeo jq curl python3 sha256sum || exit "$E2E_ABORTED"
ensure_test_images

expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}

# ---------------------------------------------------------------- registry:2, and two berths
R2_PORT=$(free_port)
R2="127.0.0.1:$R2_PORT"
mkdir -p "$T/r2/data"
cat >"$T/r2/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $T/r2/data}
  delete: {enabled: true}
http: {addr: "$R2", secret: berth-e2e-fixed-secret}
YML
start_r2() {
  env -u REGISTRY_AUTH_FILE docker-registry serve "$T/r2/config.yml" >>"$T/r2/log" 2>&1 &
  REG_PIDS+=("$!")
  for _ in $(seq 100); do curl -s -o /dev/null "http://$R2/v2/" && return 0; sleep 0.1; done
  echo "registry:2 did not start"; tail -n 20 "$T/r2/log"; return 1
}
start_r2 >"$T/r2.msg" 2>&1 || abort "start registry:2" "$(cat "$T/r2.msg")"

export REG_AUTH_MODE=token
PW_A=$(new_password)
PW_B=$(new_password)
REG_ADMIN_PASSWORD=$PW_A start_registry_or_abort "$T/a"
A=$REG A_PID=$REG_PID A_PORT=$REG_PORT
REG_ADMIN_PASSWORD=$PW_B start_registry_or_abort "$T/b"
B=$REG
unset REG_AUTH_MODE

# api HOST PASSWORD METHOD PATH [BODY]: /api/v2.0 as admin; the body of the answer on stdout,
# the status in $T/api.status.
api() {
  local host=$1 pw=$2 method=$3 path=$4 body=${5:-}
  local args=(-s -o "$T/api.out" -D "$T/api.headers" -w '%{http_code}' -u "admin:$pw" -X "$method")
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "http://$host/api/v2.0$path" >"$T/api.status"
  cat "$T/api.out"
}
api_status() { cat "$T/api.status"; }
created_id() { header_of "$T/api.headers" location | awk -F/ '{print $NF}'; }

# new_policy HOST PW BODY: create a policy; prints its id.
new_policy() {
  api "$1" "$2" POST /replication/policies "$3" >/dev/null
  [[ $(api_status) == 201 ]] || { echo "create policy: $(api_status) $(cat "$T/api.out")" >&2; return 1; }
  created_id
}
# run_policy HOST PW POLICY: start it; prints the execution id.
run_policy() {
  api "$1" "$2" POST /replication/executions "{\"policy_id\": $3}" >/dev/null
  [[ $(api_status) == 201 ]] || { echo "start: $(api_status) $(cat "$T/api.out")" >&2; return 1; }
  created_id
}
# finished HOST PW EXECUTION [SECONDS]: wait until it is no longer InProgress; prints its status.
finished() {
  local status i
  for i in $(seq $((${4:-60} * 5))); do
    status=$(api "$1" "$2" GET "/replication/executions/$3" | jq -r .status)
    [[ "$status" != InProgress ]] && { echo "$status"; return 0; }
    sleep 0.2
  done
  echo "still InProgress after ${4:-60} s: $(cat "$T/api.out")"; return 1
}
expect_succeeded() {  # HOST PW EXECUTION [SECONDS]
  local status
  status=$(finished "$@") || { echo "$status"; return 1; }
  if [[ "$status" != Succeed ]]; then
    echo "execution $3: $status"; api "$1" "$2" GET "/replication/executions/$3"; echo
    local task
    for task in $(api "$1" "$2" GET "/replication/executions/$3/tasks" | jq -r '.[].id'); do
      api "$1" "$2" GET "/replication/executions/$3/tasks/$task/log"
    done
    return 1
  fi
}

# digest_of REF [CREDS]: the manifest digest skopeo sees.
digest_of() {
  local creds=()
  [[ -n "${2:-}" ]] && creds=(--creds "$2")
  skopeo inspect --raw --tls-verify=false "${creds[@]}" "docker://$1" | sha256sum | awk '{print "sha256:" $1}'
}

# ---------------------------------------------------------------- the image on berth A
push_blob_to() {  # HOST CREDS REPO FILE: monolithic upload
  local location digest
  digest="sha256:$(sha256sum "$4" | cut -d' ' -f1)"
  location=$(curl -fsS -u "$2" -D - -o /dev/null -X POST "http://$1/v2/$3/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  case "$location" in http*) ;; *) location="http://$1$location" ;; esac
  curl -fsS -u "$2" -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$4" \
    "$location$([[ $location == *\?* ]] && echo '&' || echo '?')digest=$digest" >/dev/null
}
put_manifest_to() {  # HOST CREDS REPO REFERENCE FILE
  curl -fsS -u "$2" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$5" "http://$1/v2/$3/manifests/$4" >/dev/null
}
has_digest() {  # REF CREDS|"" DIGEST: the manifest skopeo reads has DIGEST
  expect_equal "$3" "$(digest_of "$1" "$2")"
}
same_platforms() {  # SOURCE-REF CREDS|"" DIR: skopeo copy --all into DIR; each platform's manifest as in the layout
  local creds=() d
  [[ -n "$2" ]] && creds=(--src-creds "$2")
  skopeo copy -q --all --src-tls-verify=false "${creds[@]}" "docker://$1" "oci:$3:v1" || return 1
  for d in $(jq -r '.manifests[].digest' "$IMG/oci/blobs/sha256/${INDEX#sha256:}"); do
    cmp "$IMG/oci/blobs/sha256/${d#sha256:}" "$3/blobs/sha256/${d#sha256:}" || return 1
  done
}

setup_a() {
  api "$A" "$PW_A" POST /projects '{"project_name": "team"}' >/dev/null
  [[ $(api_status) == 201 ]] || { cat "$T/api.out"; return 1; }
  skopeo copy -q --all --dest-tls-verify=false --dest-creds "admin:$PW_A" "oci:$IMG/oci:multi" "docker://$A/team/app:v1"
}
check "berth A: project team, and a two-platform index pushed with skopeo --all" setup_a
INDEX=$(digest_of "$A/team/app:v1" "admin:$PW_A")
SIG_TAG="${INDEX/:/-}.sig"

# A cosign-style signature (a tag sha256-<hex>.sig) and an SBOM referrer (subject: the index).
EMPTY=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
printf '{}' >"$T/empty.json"
echo "an spdx document for team/app" >"$T/sbom.spdx"
echo "a simple signing payload" >"$T/sig.payload"
INDEX_SIZE=$(skopeo inspect --raw --tls-verify=false --creds "admin:$PW_A" "docker://$A/team/app:v1" | wc -c)
jq -n --arg s "sha256:$(sha256sum "$T/sbom.spdx" | cut -d' ' -f1)" --argjson n "$(stat -c %s "$T/sbom.spdx")" \
  --arg i "$INDEX" --argjson is "$INDEX_SIZE" --arg e "$EMPTY" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", artifactType: "application/spdx+json",
    config: {mediaType: "application/vnd.oci.empty.v1+json", digest: $e, size: 2},
    layers: [{mediaType: "application/spdx+json", digest: $s, size: $n}],
    subject: {mediaType: "application/vnd.oci.image.index.v1+json", digest: $i, size: $is}}' >"$T/sbom.json"
SBOM="sha256:$(sha256sum "$T/sbom.json" | cut -d' ' -f1)"
jq -n --arg s "sha256:$(sha256sum "$T/sig.payload" | cut -d' ' -f1)" --argjson n "$(stat -c %s "$T/sig.payload")" \
  --arg e "$EMPTY" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.empty.v1+json", digest: $e, size: 2},
    layers: [{mediaType: "application/vnd.dev.cosign.simplesigning.v1+json", digest: $s, size: $n,
              annotations: {"dev.cosignproject.cosign/signature": "MEUCIQ"}}]}' >"$T/sig.json"
push_accessories() {
  local f
  for f in empty.json sbom.spdx sig.payload; do push_blob_to "$A" "admin:$PW_A" team/app "$T/$f" || return 1; done
  put_manifest_to "$A" "admin:$PW_A" team/app "$SBOM" "$T/sbom.json" &&
    put_manifest_to "$A" "admin:$PW_A" team/app "$SIG_TAG" "$T/sig.json"
}
check "berth A: an SBOM referrer of the index and a cosign-style signature tag" push_accessories

# ---------------------------------------------------------------- berth A → registry:2
add_endpoint() {  # HOST PW BODY
  api "$1" "$2" POST /registries "$3" >/dev/null
  [[ $(api_status) == 201 ]] || { echo "$(api_status) $(cat "$T/api.out")"; return 1; }
}
check "berth A: registry:2 as a registry endpoint" \
  add_endpoint "$A" "$PW_A" "{\"name\": \"r2\", \"type\": \"docker-registry\", \"url\": \"http://$R2\"}"
R2_ID=$(api "$A" "$PW_A" GET "/registries?name=r2" | jq -r '.[0].id')
PUSH_POLICY=$(new_policy "$A" "$PW_A" "{\"name\": \"to-r2\", \"dest_registry\": {\"id\": $R2_ID},
  \"filters\": [{\"type\": \"name\", \"value\": \"team/**\"}], \"trigger\": {\"type\": \"manual\"}}")
EXECUTION=$(run_policy "$A" "$PW_A" "$PUSH_POLICY")
check "berth → registry:2: the execution succeeds" expect_succeeded "$A" "$PW_A" "$EXECUTION"
check "berth → registry:2: the index has the same digest there" has_digest "$R2/team/app:v1" "" "$INDEX"
check "berth → registry:2: both platforms pull, byte-identical (skopeo copy --all)" \
  same_platforms "$R2/team/app:v1" "" "$T/from-r2"
signature_copied() {
  skopeo list-tags --tls-verify=false "docker://$R2/team/app" | jq -e --arg t "$SIG_TAG" '.Tags | index($t)'
}
check "berth → registry:2: the signature tag came along" signature_copied
in_tag_schema() {
  curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$R2/v2/team/app/manifests/${INDEX/:/-}" |
    jq -e --arg d "$SBOM" '.manifests | map(.digest) | index($d)'
}
check "berth → registry:2 (no referrers API): the SBOM is in the tag schema's index" in_tag_schema
task_logged() {
  local task
  task=$(api "$A" "$PW_A" GET "/replication/executions/$EXECUTION/tasks" | jq -r '.[0] | select(.status == "Succeed") | .id')
  [[ -n $task ]] && api "$A" "$PW_A" GET "/replication/executions/$EXECUTION/tasks/$task/log" | grep 'done:'
}
check "berth → registry:2: the task is listed with its log" task_logged

# ---------------------------------------------------------------- registry:2 → berth B
pull_into_b() {
  local id policy execution
  add_endpoint "$B" "$PW_B" "{\"name\": \"r2\", \"type\": \"docker-registry\", \"url\": \"http://$R2\"}" || return 1
  id=$(api "$B" "$PW_B" GET '/registries?name=r2' | jq -r '.[0].id')
  policy=$(new_policy "$B" "$PW_B" "{\"name\": \"from-r2\", \"src_registry\": {\"id\": $id},
    \"dest_namespace\": \"copy\", \"dest_namespace_replace_count\": 0,
    \"filters\": [{\"type\": \"name\", \"value\": \"team/app\"}]}") || return 1
  execution=$(run_policy "$B" "$PW_B" "$policy") || return 1
  expect_succeeded "$B" "$PW_B" "$execution"
}
check "berth B: a pull policy from registry:2 into namespace copy runs" pull_into_b
check "registry:2 → berth: copy/team/app:v1 has the index's digest" has_digest "$B/copy/team/app:v1" "admin:$PW_B" "$INDEX"
referrer_again() {
  curl -fsS -u "admin:$PW_B" "http://$B/v2/copy/team/app/referrers/$INDEX" |
    jq -e --arg d "$SBOM" '.manifests | map(.digest) | index($d)'
}
check "registry:2 → berth: the SBOM, found through the tag schema, is a referrer again" referrer_again
check "registry:2 → berth: both platforms pull from berth B, byte-identical" \
  same_platforms "$B/copy/team/app:v1" "admin:$PW_B" "$T/from-b"

# ---------------------------------------------------------------- berth A → berth B, on push
check "berth A: berth B as a harbor-type endpoint" add_endpoint "$A" "$PW_A" \
  "{\"name\": \"b\", \"type\": \"harbor\", \"url\": \"http://$B\", \"credential\": {\"access_key\": \"admin\", \"access_secret\": \"$PW_B\"}}"
B_ID=$(api "$A" "$PW_A" GET "/registries?name=b" | jq -r '.[0].id')
EVENT_POLICY=$(new_policy "$A" "$PW_A" "{\"name\": \"to-b\", \"dest_registry\": {\"id\": $B_ID},
  \"dest_namespace\": \"edge\", \"replicate_deletion\": true,
  \"filters\": [{\"type\": \"tag\", \"value\": \"release-*\"}], \"trigger\": {\"type\": \"event_based\"}}")
arrives() {  # REF: appears on B within 30 s
  local i
  for i in $(seq 150); do
    skopeo inspect --raw --tls-verify=false --creds "admin:$PW_B" "docker://$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 never arrived"; return 1
}
push_release() {
  skopeo copy -q --dest-tls-verify=false --dest-creds "admin:$PW_A" "oci:$IMG/oci:v1-arm64" "docker://$A/team/app:release-1" &&
    arrives "$B/edge/app:release-1"
}
check "berth → berth: a push of release-1 to A appears in B as edge/app:release-1 (project edge made on B)" push_release
RELEASE=$(digest_of "$A/team/app:release-1" "admin:$PW_A")
check "berth → berth: the copy has the same digest" has_digest "$B/edge/app:release-1" "admin:$PW_B" "$RELEASE"
filtered_out() {
  skopeo copy -q --dest-tls-verify=false --dest-creds "admin:$PW_A" "oci:$IMG/oci:v1" "docker://$A/team/app:dev" || return 1
  sleep 2
  ! skopeo inspect --raw --tls-verify=false --creds "admin:$PW_B" "docker://$B/edge/app:dev" >/dev/null 2>&1
}
check "berth → berth: a tag the filter leaves (dev) is not copied" filtered_out
delete_follows() {
  local i code
  skopeo delete --tls-verify=false --creds "admin:$PW_A" "docker://$A/team/app@$RELEASE" || return 1
  for i in $(seq 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW_B" "http://$B/v2/edge/app/manifests/$RELEASE")
    [[ $code == 404 ]] && return 0
    sleep 0.2
  done
  echo "still there: $code"; return 1
}
check "berth → berth: deleting release-1 on A deletes it on B" delete_follows
events_listed() {
  api "$A" "$PW_A" GET "/replication/executions?policy_id=$EVENT_POLICY&trigger=event_based" |
    jq -e 'length == 2 and all(.[]; .status == "Succeed")'
}
check "berth → berth: both event-based executions are listed as succeeded" events_listed

# ---------------------------------------------------------------- kill -9 mid-run, then resume
head -c $((24 << 20)) /dev/urandom >"$T/big.layer"
jq -n '{architecture: "amd64", os: "linux", rootfs: {type: "layers", diff_ids: []}}' >"$T/big.config"
jq -n --arg c "sha256:$(sha256sum "$T/big.config" | cut -d' ' -f1)" --argjson cn "$(stat -c %s "$T/big.config")" \
  --arg l "sha256:$(sha256sum "$T/big.layer" | cut -d' ' -f1)" --argjson ln "$(stat -c %s "$T/big.layer")" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cn},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ln}]}' >"$T/big.json"
BIG="sha256:$(sha256sum "$T/big.json" | cut -d' ' -f1)"
push_big() {
  push_blob_to "$A" "admin:$PW_A" team/big "$T/big.config" && push_blob_to "$A" "admin:$PW_A" team/big "$T/big.layer" &&
    put_manifest_to "$A" "admin:$PW_A" team/big v1 "$T/big.json"
}
check "berth A: a 24 MiB image team/big:v1" push_big
SLOW_POLICY=$(new_policy "$A" "$PW_A" "{\"name\": \"slow\", \"dest_registry\": {\"id\": $R2_ID}, \"dest_namespace\": \"slow\",
  \"dest_namespace_replace_count\": 0, \"speed\": 2048, \"filters\": [{\"type\": \"name\", \"value\": \"team/big\"}]}")
SLOW=$(run_policy "$A" "$PW_A" "$SLOW_POLICY")
copying() {
  local i
  for i in $(seq 100); do
    api "$A" "$PW_A" GET "/replication/executions/$SLOW/tasks" | jq -e '.[0].status == "InProgress"' >/dev/null && { sleep 3; return 0; }
    sleep 0.1
  done
  return 1
}
check "resume: the slowed run (2 MiB/s) is copying when berth A is killed with kill -9" copying
kill -KILL "$A_PID" 2>/dev/null; wait "$A_PID" 2>/dev/null
not_there() { expect_equal 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://$R2/v2/slow/team/big/manifests/v1")"; }
check "resume: registry:2 has no slow/team/big:v1 yet" not_there
REG_AUTH_MODE=token REG_ADMIN_PASSWORD=$PW_A start_registry_or_abort "$T/a" "$A_PORT"
# The killed node's lease on the job runs out (60 s); then the restarted node takes it over.
check "resume: after the restart the execution is taken over and succeeds" expect_succeeded "$A" "$PW_A" "$SLOW" 170
identical() {
  has_digest "$R2/slow/team/big:v1" "" "$BIG" &&
    curl -fsS "http://$R2/v2/slow/team/big/blobs/sha256:$(sha256sum "$T/big.layer" | cut -d' ' -f1)" | cmp - "$T/big.layer"
}
check "resume: registry:2's copy of team/big:v1 is byte-identical" identical
