#!/usr/bin/env bash
# Usage, quotas and tag immutability with real clients: a project's storage limit (the configured default, and one set through Harbor's /quotas) refuses skopeo's and docker's push at the blob that crosses it with DENIED and the used/limit figures; raised, the same push goes in; the API's usage equals the sum of the image's blob and manifest sizes; `berth df` shows it. An immutability rule refuses skopeo's overwrite and delete of a protected tag and lets docker push a new one. A retention policy's dry run lists what its real run then removes, never an immutable tag.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=quota

if [[ "$E2E_TARGET" == reference ]]; then
  skip "quota: storage quotas" "distribution 2.8 has no quotas"
  exit 0
fi

require_tools docker dockerd skopeo curl jq python3 || exit "$E2E_ABORTED"
ensure_test_images

ADMIN_PASS=$(new_password)
REG_AUTH_MODE=token
REG_ADMIN_PASSWORD=$ADMIN_PASS
# Every new project gets 100 000 bytes: less than the test image's busybox layer.
export BERTH_QUOTA_DEFAULT_PROJECT_BYTES=100000
start_registry_or_abort "$T/reg"
unset REG_ADMIN_PASSWORD BERTH_QUOTA_DEFAULT_PROJECT_BYTES
API="$REG_URL/api/v2.0"
mkdir -p "$T/api"
setup_containers_env

api() {  # METHOD PATH [JSON] as admin: prints the status; body in $T/api/body
  local method=$1 path=$2 body=${3:-}
  local args=(-X "$method" -D "$T/api/headers" -o "$T/api/body" -w '%{http_code}' "$API$path")
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl_as admin "$ADMIN_PASS" "${args[@]}"
}
expect_api() {  # WANT METHOD PATH [JSON]
  local want=$1 got; shift
  got=$(api "$@")
  [[ "$got" == "$want" ]] || { echo "HTTP $got, want $want: $(cat "$T/api/body")"; return 1; }
}
api_field() {  # PATH JQ: one field of a GET as admin
  curl_as admin "$ADMIN_PASS" "$API$1" | jq -r "$2"
}

check "POST /projects creates small (201)" expect_api 201 POST /projects '{"project_name":"small"}'
SMALL_ID=$(header_of "$T/api/headers" location | awk -F/ '{print $NF}')
check "small got the configured default limit" \
  bash -c "[[ \$(curl -s -K - '$API/quotas/$SMALL_ID' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r .hard.storage) == 100000 ]]"
check "skopeo login --password-stdin" with_stdin "$ADMIN_PASS" \
  skopeo login -u admin --password-stdin --tls-verify=false "$REG"
check "skopeo's push into small is denied with the used and limit figures" \
  expect_denied "quota exceeded: used 0 B of 97.7 KiB in project small" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REG/small/app:v1"
check "nothing of the refused push is in small" \
  bash -c "[[ \$(curl -s -K - '$API/projects/small/summary' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r .quota.used.storage) == 0 ]]"
check "no upload session is left behind" \
  bash -c "[[ -z \$(ls '$REG_DIR/data/uploads' 2>/dev/null) ]]"

if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
check "docker tag for small" docker tag e2e-local/busybox:v1 "$REG/small/docker:v1"
check "docker login as admin --password-stdin" with_stdin "$ADMIN_PASS" docker login "$REG" -u admin --password-stdin
check "docker's push into small is denied with the used and limit figures" \
  expect_denied "quota exceeded: used" docker push "$REG/small/docker:v1"

# Raised through Harbor's API (as its UI does), the same pushes go in.
check "PUT /quotas/{id} raises small's limit to 10 MiB" \
  expect_api 200 PUT "/quotas/$SMALL_ID" '{"hard":{"storage":10485760}}'
check "skopeo copies the image into small/app" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REG/small/app:v1"
check "docker pushes small/docker" docker push "$REG/small/docker:v1"

# The usage the API reports equals the sum of the distinct blobs' sizes plus the manifests'.
usage_matches() {
  local total=0 repo manifest digest size used
  declare -A seen=()
  for repo in app docker; do
    # To a file: the exact bytes (a command substitution would drop a final newline).
    skopeo inspect --raw --tls-verify=false "docker://$REG/small/$repo:v1" >"$T/manifest-$repo" || return 1
    manifest=$(cat "$T/manifest-$repo")
    total=$((total + $(wc -c <"$T/manifest-$repo")))
    while read -r digest size; do
      [[ -n "${seen[$digest]:-}" ]] && continue
      seen[$digest]=1
      total=$((total + size))
    done < <(jq -r '[.config] + .layers | .[] | "\(.digest) \(.size)"' <<<"$manifest")
  done
  used=$(api_field /projects/small/summary .quota.used.storage)
  echo "API: $used, sum of the manifests and distinct blobs: $total"
  [[ "$used" == "$total" ]]
}
check "small's usage equals the sum of its manifests' and distinct blobs' sizes" usage_matches
check "/quotas lists small with that usage" \
  bash -c "[[ \$(curl -s -K - '$API/quotas?reference=project&reference_id=$SMALL_ID' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r '.[0].used.storage') == \$(curl -s -K - '$API/projects/small/summary' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r .quota.used.storage) ]]"
check "the repository shows its usage" \
  bash -c "[[ \$(curl -s -K - '$API/projects/small/repositories/app' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r '.usage.used') -gt 0 ]]"

# berth df reads the same counters (from the database, while the server runs: SQLite WAL).
df_shows_small() {
  local out
  out=$(BERTH_DATA_DIR="$REG_DIR/data" "$BERTH_BIN" df --bytes 2>&1) || { echo "$out"; return 1; }
  echo "$out"
  awk -v want="$(api_field /projects/small/summary .quota.used.storage)" \
    '$1 == "small" && $2 == want && $5 == 10485760 {found=1} END {exit !found}' <<<"$out"
}
[[ "$E2E_TARGET" == berth ]] && check "berth df shows small's usage and limit" df_shows_small

# ---------------------------------------------------------------- tag immutability
IMMUTABLE_RULE='{"disabled":false,"action":"immutable","template":"immutable_template",
  "tag_selectors":[{"kind":"doublestar","decoration":"matches","pattern":"{v*,release-?}"}],
  "scope_selectors":{"repository":[{"kind":"doublestar","decoration":"repoMatches","pattern":"**"}]}}'
check "POST /projects/small/immutabletagrules protects v* and release-? (201)" \
  expect_api 201 POST /projects/small/immutabletagrules "$IMMUTABLE_RULE"
RULE_ID=$(header_of "$T/api/headers" location | awk -F/ '{print $NF}')
check "skopeo's overwrite of small/app:v1 with another image is denied: tag v1 is immutable" \
  expect_denied "tag v1 is immutable" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1-arm64" "docker://$REG/small/app:v1"
check "small/app:v1 is still the image first pushed" \
  bash -c "[[ \$(skopeo inspect --tls-verify=false 'docker://$REG/small/app:v1' | jq -r .Digest) == '$(layout_digest v1)' ]]"
check "docker pushes a new protected tag (small/docker:v2)" \
  bash -c "docker tag '$REG/small/docker:v1' '$REG/small/docker:v2' && docker push '$REG/small/docker:v2'"
check "pushing v2 again (the same image) is allowed" docker push "$REG/small/docker:v2"
check "skopeo delete of the protected tag is denied" \
  expect_denied "tag v1 is immutable" skopeo delete --tls-verify=false "docker://$REG/small/app:v1"
check "Harbor's API refuses deleting the artifact that carries v1 (412)" \
  expect_api 412 DELETE "/projects/small/repositories/app/artifacts/v1"
check "the tag list shows v1 as immutable" \
  bash -c "[[ \$(curl -s -K - '$API/projects/small/repositories/app/artifacts/v1/tags' <<<'user = \"admin:$ADMIN_PASS\"' | jq -r '.[0].immutable') == true ]]"
check "DELETE the rule (200)" expect_api 200 DELETE "/projects/small/immutabletagrules/$RULE_ID"
check "without the rule skopeo overwrites small/app:v1" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1-arm64" "docker://$REG/small/app:v1"

# ---------------------------------------------------------------- retention
# Keep only v* tags in small/app: skopeo pushes two more tags; a dry run lists what would go,
# the real run removes exactly that; the immutable tag (protected again) stays.
check "POST /projects/small/immutabletagrules protects v1 again (201)" \
  expect_api 201 POST /projects/small/immutabletagrules "$IMMUTABLE_RULE"
check "skopeo pushes small/app:dev-1" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REG/small/app:dev-1"
check "skopeo pushes small/app:nightly (an index of both images)" \
  skopeo copy -q --all --dest-tls-verify=false "oci:$IMG/oci:multi" "docker://$REG/small/app:nightly"
RETENTION_POLICY='{"algorithm":"or","rules":[{"disabled":false,"action":"retain","template":"always","params":{},
  "tag_selectors":[{"kind":"doublestar","decoration":"matches","pattern":"v*","extras":"{\"untagged\":false}"}],
  "scope_selectors":{"repository":[{"kind":"doublestar","decoration":"repoMatches","pattern":"**"}]}}],
  "trigger":{"kind":"Schedule","settings":{"cron":""}},"scope":{"level":"project","ref":'"$SMALL_ID"'}}'
check "POST /retentions creates small's policy (201)" expect_api 201 POST /retentions "$RETENTION_POLICY"
POLICY_ID=$(header_of "$T/api/headers" location | awk -F/ '{print $NF}')
check "a dry run (201)" expect_api 201 POST "/retentions/$POLICY_ID/executions" '{"dry_run":true}'
check "the real run (201)" expect_api 201 POST "/retentions/$POLICY_ID/executions" '{"dry_run":false}'
retention_runs_agree() {
  local runs
  runs=$(api_field "/retentions/$POLICY_ID/executions" '.')
  echo "$runs" | jq -c '.[] | {dry_run, status, removed: [.removed[].tags]}'
  jq -e 'length == 2 and .[0].dry_run == false and .[1].dry_run == true
    and .[0].removed == .[1].removed and (.[0].removed | length) >= 1
    and all(.[0].removed[]; all(.tags[]; startswith("v") | not))' <<<"$runs" >/dev/null
}
check "the real run removed what the dry run listed, no v* tag among them" retention_runs_agree
check "small/app:nightly is gone" expect_failure skopeo inspect --tls-verify=false "docker://$REG/small/app:nightly"
check "small/app:v1 stays" skopeo inspect --tls-verify=false "docker://$REG/small/app:v1"
