#!/usr/bin/env bash
# berth import registry2: a distribution 2.8 registry filled with skopeo (OCI and docker schema 2 images, a two-platform index, nested names, a deleted tag) is imported from its storage tree into a fresh berth, twice, and every tag pulls back with the digest registry:2 served; in token mode the created project is private.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=import

if [[ "$E2E_TARGET" == reference ]]; then
  skip "berth import registry2" "the import is a berth command"
  exit 0
fi

require_tools docker-registry skopeo jq curl sha256sum || exit "$E2E_ABORTED"
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

exit 0
