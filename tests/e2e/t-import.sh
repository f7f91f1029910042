#!/usr/bin/env bash
# berth import registry2: a distribution 2.8 registry filled with skopeo (OCI and docker schema 2 images, a two-platform index, nested names, a deleted tag) is imported from its storage tree into a fresh berth, twice, and every tag pulls back with the digest registry:2 served; in token mode the created project is private.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=import

if [[ "$E2E_TARGET" == reference ]]; then
  skip "berth import registry2" "the import is a berth command"
  exit 0
fi

require_tools docker-registry skopeo jq curl sha256sum moto_server || exit "$E2E_ABORTED"
ensure_test_images

SK=(--tls-verify=false)
raw_digest() { echo "sha256:$(skopeo inspect "${SK[@]}" --raw "docker://$1" | sha256sum | cut -d' ' -f1)"; }
expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}

# ---------------------------------------------------------------- the source: registry:2
E2E_TARGET=reference start_registry_or_abort "$T/src"
SRC=$REG
push() { skopeo copy -q --dest-tls-verify=false "$@"; }
push_two_tags() { push "oci:$IMG/oci:v1" "docker://$SRC/team/app:v1" && push "oci:$IMG/oci:v1" "docker://$SRC/team/app:v2"; }
check "registry:2: push an OCI image under two tags" push_two_tags
check "registry:2: push a docker schema 2 image" push --format v2s2 "oci:$IMG/oci:v1" "docker://$SRC/library/busybox:1"
check "registry:2: push a two-platform index" push --all "oci:$IMG/oci:multi" "docker://$SRC/team/multi:v1"
check "registry:2: push under a nested name" push "oci:$IMG/oci:v1-arm64" "docker://$SRC/team/tools/deep/arm:v1"
check "registry:2: push an image whose tag is then deleted" push "oci:$IMG/oci:v1-arm64" "docker://$SRC/team/app:gone"
# Distribution 2.8 answers DELETE .../manifests/<tag> with 400: a tag goes by deleting the
# manifest it names (which removes the revision link and every tag on it).
GONE=$(raw_digest "$SRC/team/app:gone")
check "registry:2: delete the tag 'gone' (DELETE by its digest)" \
  expect_code 202 -X DELETE "http://$SRC/v2/team/app/manifests/$GONE"

# What registry:2 serves: "repository tag digest" lines, and its catalog.
: >"$T/served"
for repo in team/app library/busybox team/multi team/tools/deep/arm; do
  for tag in $(skopeo list-tags "${SK[@]}" "docker://$SRC/$repo" | jq -r '.Tags[]'); do
    echo "$repo $tag $(raw_digest "$SRC/$repo:$tag")" >>"$T/served"
  done
done
CATALOG=$(curl -fsS "http://$SRC/v2/_catalog" | jq -c '.repositories | sort')
check_eq "registry:2 serves 5 tags, 'gone' not among them" "5 0" \
  "$(wc -l <"$T/served") $(grep -c ' gone ' "$T/served")"
stop_registry
SRC_ROOT="$T/src/data"
find "$SRC_ROOT" -type f -exec sha256sum {} + | sort >"$T/src-before.sums"

# ---------------------------------------------------------------- the import
DATA="$T/berth/data"
# import_expecting PATTERN ARGS...: berth import registry2 ARGS succeeds and its summary matches PATTERN
import_expecting() {
  local pattern=$1; shift
  "$BERTH_BIN" import registry2 "$@" --data-dir "$DATA" >"$T/import.out" 2>"$T/import.err"
  local rc=$?
  cat "$T/import.out"
  [[ $rc == 0 ]] || { tail -n 5 "$T/import.err"; return 1; }
  grep -Eq -- "$pattern" "$T/import.out" || { echo "the summary does not match: $pattern"; return 1; }
}
dry_run_copies_nothing() {
  import_expecting '^manifests: +6 would be imported' "$SRC_ROOT" --dry-run && test ! -e "$DATA/blobs/sha256"
}
check "--dry-run reports 6 manifests and copies no blob" dry_run_copies_nothing
check "the import takes 6 manifests" \
  import_expecting '^manifests: +6 imported, 0 already present' "$SRC_ROOT"
check_eq "the import takes 5 tags and skips nothing" "tags: 5 imported; skipped: 0 errors, 0 warnings" \
  "$(awk '/^tags:/ {printf "tags: %s imported; ", $2} /^skipped:/ {sub(/^skipped: +/, ""); printf "skipped: %s", $0}' "$T/import.out")"
check "a second import (the v2 dir as the root) imports nothing and fails nothing" \
  import_expecting '^manifests: +0 imported, 6 already present' "$SRC_ROOT/docker/registry/v2"
check "the import did not modify the registry:2 tree" \
  diff "$T/src-before.sums" <(find "$SRC_ROOT" -type f -exec sha256sum {} + | sort)

# ---------------------------------------------------------------- pulled back through berth
start_registry_or_abort "$T/berth"
check_served() {
  local repo tag digest
  while read -r repo tag digest; do
    expect_equal "$repo:$tag $digest" "$repo:$tag $(raw_digest "$REG/$repo:$tag")" || return 1
  done <"$T/served"
}
check "every tag answers the digest registry:2 served" check_served
check_eq "the catalog lists the same repositories" "$CATALOG" \
  "$(curl -fsS "$REG_URL/v2/_catalog" | jq -c '.repositories | sort')"
check_fails "the deleted tag is absent" skopeo inspect "${SK[@]}" --raw "docker://$REG/team/app:gone"
check_fails "the deleted manifest is absent" skopeo inspect "${SK[@]}" --raw "docker://$REG/team/app@$GONE"
check "an image pulls with its layers (skopeo verifies every digest)" \
  skopeo copy -q --src-tls-verify=false "docker://$REG/library/busybox:1" "oci:$T/busybox-out:1"
check "the index and both children pull (copy --all)" \
  skopeo copy -q --all --src-tls-verify=false "docker://$REG/team/multi:v1" "oci:$T/multi-out:v1"
check_eq "the pulled index has registry:2's digest" "$(awk '$1 == "team/multi" {print $3}' "$T/served")" \
  "$(jq -r '.manifests[0].digest' "$T/multi-out/index.json" 2>/dev/null)"
check_eq "--override-arch arm64 resolves to the arm64 image" arm64 \
  "$(skopeo inspect "${SK[@]}" --override-arch arm64 "docker://$REG/team/multi:v1" | jq -r .Architecture)"

# ---------------------------------------------------------------- token mode: created projects are private
stop_registry
REG_AUTH_MODE=token REG_ADMIN_PASSWORD=$(new_password) start_registry_or_abort "$T/berth"
check "token mode: anonymous pull from the public project library works" \
  skopeo inspect "${SK[@]}" --raw "docker://$REG/library/busybox:1"
check_eq "the import created the project team, private" "team false" \
  "$("$BERTH_BIN" project list --data-dir "$DATA" 2>/dev/null | awk '$2 == "team" {print $2, $3}')"
check "token mode: an anonymous pull from team is refused" \
  expect_auth_failure skopeo inspect "${SK[@]}" --raw "docker://$REG/team/app:v1"

# ---------------------------------------------------------------- from a bucket: registry:2's s3 driver
stop_registry
S3_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$T/moto.log" 2>&1 &
REG_PIDS+=("$!")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.1; done
curl -fs -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/r2-src" || abort "create the bucket on moto_server"
S3SRC="127.0.0.1:$(free_port)"
cat >"$T/r2-s3.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  s3: {region: us-east-1, bucket: r2-src, rootdirectory: /r2root, regionendpoint: "http://127.0.0.1:$S3_PORT", accesskey: e2e, secretkey: e2e-secret, secure: false}
  delete: {enabled: true}
http: {addr: "$S3SRC"}
YML
# A CA bundle named in the environment (AWS_CA_BUNDLE) makes Distribution's S3 driver panic.
env -u REGISTRY_AUTH_FILE -u AWS_CA_BUNDLE docker-registry serve "$T/r2-s3.yml" >"$T/r2-s3.log" 2>&1 &
R2S3=$!
REG_PIDS+=("$R2S3")
for _ in $(seq 100); do curl -s -o /dev/null "http://$S3SRC/v2/" && break; sleep 0.1; done
check "registry:2 on S3: push an image" push "oci:$IMG/oci:v1" "docker://$S3SRC/team/s3app:v1"
check "registry:2 on S3: push a two-platform index" push --all "oci:$IMG/oci:multi" "docker://$S3SRC/team/s3multi:v1"
S3_APP=$(layout_digest v1) S3_MULTI=$(layout_digest multi)
check_eq "registry:2 on S3 serves the image's digest" "$S3_APP" "$(raw_digest "$S3SRC/team/s3app:v1")"
kill "$R2S3"; wait "$R2S3" 2>/dev/null
DATA="$T/berth-s3/data"
import_from_bucket() {
  AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=e2e \
    AWS_SECRET_ACCESS_KEY=e2e-secret import_expecting '^manifests: +4 imported' s3://r2-src/r2root
}
check "berth import registry2 s3://r2-src/r2root (credentials from the AWS environment)" import_from_bucket
start_registry_or_abort "$T/berth-s3"
check_eq "the image from the bucket answers registry:2's digest" "$S3_APP" "$(raw_digest "$REG/team/s3app:v1")"
check_eq "the index from the bucket answers registry:2's digest" "$S3_MULTI" "$(raw_digest "$REG/team/s3multi:v1")"
check "the index and both children pull from berth (copy --all)" \
  skopeo copy -q --all --src-tls-verify=false "docker://$REG/team/s3multi:v1" "oci:$T/s3multi-out:v1"

exit 0
