#!/usr/bin/env bash
# podman against the registry: push, rmi, pull, run; manifest create + add (two platforms) + push --all; pull --arch arm64.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=podman

require_tools podman skopeo jq curl || exit "$E2E_ABORTED"
ensure_test_images
start_registry_or_abort "$T/reg"
setup_containers_env

IMAGE="$REG/e2e/podman/busybox"
TLS=--tls-verify=false

expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}
expect_output() {
  local want=$1 got; shift
  got=$("$@") || { echo "$got"; return 1; }
  expect_equal "$want" "$got"
}
image_arch() { pm image inspect --format '{{.Architecture}}' "$1"; }
# sorted architectures of a manifest list, stored locally or in the registry
local_list_archs() { pm manifest inspect "$1" | jq -r '[.manifests[].platform.architecture] | sort | join(" ")'; }
remote_list_archs() { skopeo inspect $TLS --raw "docker://$1" | jq -r '[.manifests[].platform.architecture] | sort | join(" ")'; }
search_finds() {  # TERM NAME: podman search TERM lists NAME
  local out
  out=$(pm search $TLS --format '{{.Name}}' "$1") || return 1
  echo "$out"
  grep -qx "$2" <<<"$out"
}

# --- single image
check "podman load of a locally built image" pm load -q -i "$IMG/busybox-amd64.tar"
check "podman tag" pm tag "$(pm images -q --noheading | head -n 1)" "$IMAGE:v1"
check "podman push" pm push -q $TLS "$IMAGE:v1"
check "pushed image is visible to skopeo" skopeo inspect $TLS --raw "docker://$IMAGE:v1"
check "podman rmi" pm rmi -f "$IMAGE:v1"
check_fails "image is gone locally" pm image exists "$IMAGE:v1"
check "podman pull" pm pull -q $TLS "$IMAGE:v1"
check "pulled image is amd64" expect_output amd64 image_arch "$IMAGE:v1"
check "pulled image runs (podman run --network none)" \
  expect_output "hello from amd64" pm run --rm --pull=never --network none "$IMAGE:v1"

# podman push from its own storage recompresses: pull by the digest the registry reports
DIGEST=$(skopeo inspect $TLS "docker://$IMAGE:v1" 2>/dev/null | jq -r .Digest)
check "podman pull by digest" pm pull -q $TLS "$IMAGE@$DIGEST"

# --- manifest list: two platforms, pushed with --all
LIST=localhost/e2e-podman-list:v1
check "podman manifest create" pm manifest create "$LIST"
check "podman manifest add (amd64)" pm manifest add "$LIST" "oci:$IMG/oci:v1"
check "podman manifest add (arm64)" pm manifest add "$LIST" "oci:$IMG/oci:v1-arm64"
check "local list has two platforms" expect_output "amd64 arm64" local_list_archs "$LIST"
check "podman manifest push --all" \
  pm manifest push -q --all $TLS "$LIST" "docker://$REG/e2e/podman/multi:v1"
check "registry serves an index with both platforms" \
  expect_output "amd64 arm64" remote_list_archs "$REG/e2e/podman/multi:v1"

check "podman pull --arch arm64" pm pull -q $TLS --arch arm64 "$REG/e2e/podman/multi:v1"
check "pulled image is arm64" expect_output arm64 image_arch "$REG/e2e/podman/multi:v1"
check "podman pull (default arch) of the list" pm pull -q $TLS "$REG/e2e/podman/multi:v1"
check "pulled image is amd64" expect_output amd64 image_arch "$REG/e2e/podman/multi:v1"

# --- search (GET /v2/_catalog)
check "podman search finds the pushed repository" search_finds "$REG/e2e" "$REG/e2e/podman/busybox"

exit 0
