#!/usr/bin/env bash
# skopeo against the registry: copy to/from OCI layouts with byte-identical digests, inspect, list-tags, delete, multi-arch copy --all.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=skopeo

require_tools skopeo jq curl || exit "$E2E_ABORTED"
ensure_test_images
start_registry_or_abort "$T/reg"

SK_TLS=(--tls-verify=false)
REPO="$REG/e2e/skopeo/busybox"
V1=$(layout_digest v1)
ARM=$(layout_digest v1-arm64)
MULTI=$(layout_digest multi)

# raw_digest REF: sha256 of the manifest bytes the registry serves
raw_digest() {
  echo "sha256:$(skopeo inspect "${SK_TLS[@]}" --raw "docker://$1" | sha256sum | cut -d' ' -f1)"
}

# expect_equal A B: helper for checks that compare two values computed inside the check
expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}

check_raw_digest() { expect_equal "$2" "$(raw_digest "$1")"; }

check_inspect_field() {  # REF JQ-FILTER EXPECTED [extra skopeo args]
  local ref=$1 filter=$2 want=$3; shift 3
  expect_equal "$want" "$(skopeo inspect "${SK_TLS[@]}" "$@" "docker://$ref" | jq -r "$filter")"
}

check_head_digest() {  # REF-PATH EXPECTED-DIGEST ACCEPT
  local got
  got=$(curl -fsS --max-time 30 -I -H "Accept: $3" "$REG_URL/v2/$1" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
  expect_equal "$2" "$got"
}

# get_digest_multi_accept REF-PATH ACCEPT...: GET with one Accept header line per type (as docker and
# skopeo send them) and print the Docker-Content-Digest
get_digest_multi_accept() {
  local path=$1 a args=(); shift
  for a in "$@"; do args+=(-H "Accept: $a"); done
  curl -fsS --max-time 30 -D - -o /dev/null "${args[@]}" "$REG_URL/v2/$path" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}
check_multi_accept() {  # REF-PATH EXPECTED-DIGEST ACCEPT...
  local path=$1 want=$2; shift 2
  expect_equal "$want" "$(get_digest_multi_accept "$path" "$@")"
}

check_tags() {  # REPO EXPECTED-SORTED-TAGS (space separated)
  expect_equal "$2" "$(skopeo list-tags "${SK_TLS[@]}" "docker://$1" | jq -r '.Tags | sort | join(" ")')"
}

OCI_MT=application/vnd.oci.image.manifest.v1+json
IDX_MT=application/vnd.oci.image.index.v1+json

# --- single image: oci layout -> registry -> oci layout, digests unchanged
check "copy oci layout to registry (v1)" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REPO:v1"
check "copy again under a second tag (v2)" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$REPO:v2"
check "pushed manifest bytes are unchanged (sha256 of inspect --raw)" check_raw_digest "$REPO:v1" "$V1"
check "inspect Digest matches" check_inspect_field "$REPO:v1" .Digest "$V1"
check "inspect Architecture is amd64" check_inspect_field "$REPO:v1" .Architecture amd64
check "inspect by digest works" check_inspect_field "$REPO@$V1" .Digest "$V1"
check "HEAD manifest gives Docker-Content-Digest" check_head_digest "e2e/skopeo/busybox/manifests/v1" "$V1" "$OCI_MT"
check "GET manifest with several Accept header lines (stored type not first)" check_multi_accept \
  e2e/skopeo/busybox/manifests/v1 "$V1" application/vnd.docker.distribution.manifest.v2+json "$OCI_MT"
check "list-tags shows v1 v2" check_tags "$REPO" "v1 v2"

check "copy registry back to an oci layout" \
  skopeo copy -q --src-tls-verify=false "docker://$REPO:v1" "oci:$T/out:v1"
check_eq "copied-back manifest digest is unchanged" "$V1" \
  "$(jq -r '.manifests[0].digest' "$T/out/index.json" 2>/dev/null)"
check "copied-back layers are byte-identical" \
  diff <(cd "$IMG/oci/blobs/sha256" && sha256sum $(jq -r '.layers[].digest | ltrimstr("sha256:")' "${V1#sha256:}")) \
       <(cd "$T/out/blobs/sha256" && sha256sum $(jq -r '.layers[].digest | ltrimstr("sha256:")' "${V1#sha256:}"))

# --- multi-arch index
check "copy --all multi-arch index to registry" \
  skopeo copy -q --all --dest-tls-verify=false "oci:$IMG/oci:multi" "docker://$REG/e2e/skopeo/multi:v1"
check "index bytes are unchanged" check_raw_digest "$REG/e2e/skopeo/multi:v1" "$MULTI"
check "HEAD index gives Docker-Content-Digest" check_head_digest "e2e/skopeo/multi/manifests/v1" "$MULTI" "$IDX_MT"
check "GET index with several Accept header lines (index type not first)" check_multi_accept \
  e2e/skopeo/multi/manifests/v1 "$MULTI" "$OCI_MT" "$IDX_MT"
check "inspect of the index gives the index digest" check_inspect_field "$REG/e2e/skopeo/multi:v1" .Digest "$MULTI"
check "inspect --override-arch arm64 resolves to the arm64 image" \
  check_inspect_field "$REG/e2e/skopeo/multi:v1" .Architecture arm64 --override-arch arm64
check "inspect --override-arch amd64 resolves to the amd64 image" \
  check_inspect_field "$REG/e2e/skopeo/multi:v1" .Architecture amd64 --override-arch amd64
check "child manifest fetchable by digest" check_raw_digest "$REG/e2e/skopeo/multi@$ARM" "$ARM"
check "copy --all back to an oci layout" \
  skopeo copy -q --all --src-tls-verify=false "docker://$REG/e2e/skopeo/multi:v1" "oci:$T/multi-out:v1"
check_eq "copied-back index digest is unchanged" "$MULTI" \
  "$(jq -r '.manifests[0].digest' "$T/multi-out/index.json" 2>/dev/null)"
check "copied-back layout holds both platform manifests" \
  test -f "$T/multi-out/blobs/sha256/${V1#sha256:}" -a -f "$T/multi-out/blobs/sha256/${ARM#sha256:}"

# --- delete
check "copy an image to delete" \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1-arm64" "docker://$REG/e2e/skopeo/delete:v1"
check "skopeo delete" skopeo delete "${SK_TLS[@]}" "docker://$REG/e2e/skopeo/delete:v1"
check_fails "inspect of the deleted tag fails" skopeo inspect "${SK_TLS[@]}" --raw "docker://$REG/e2e/skopeo/delete:v1"
check_fails "inspect of the deleted digest fails" skopeo inspect "${SK_TLS[@]}" --raw "docker://$REG/e2e/skopeo/delete@$ARM"
check "other repositories are untouched by the delete" check_raw_digest "$REG/e2e/skopeo/multi@$ARM" "$ARM"

exit 0
