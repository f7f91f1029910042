#!/usr/bin/env bash
# buildah against the registry: from scratch, copy busybox, commit, push (OCI and docker formats), verify with skopeo, pull back.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=buildah

require_tools buildah skopeo jq busybox || exit "$E2E_ABORTED"
start_registry_or_abort "$T/reg"
setup_containers_env

IMAGE="$REG/e2e/buildah/busybox"
TLS=--tls-verify=false

expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}
expect_output() {
  local want=$1 got; shift
  got=$("$@") || { echo "$got"; return 1; }
  expect_equal "$want" "$got"
}
inspect_field() { skopeo inspect $TLS "docker://$1" | jq -r "$2"; }
# file_in_image IMAGE PATH: print a file from a local image (vfs: "mount" is just a directory)
file_in_image() {
  local ctr dir
  ctr=$(bh from -q "$1") && dir=$(bh mount "$ctr") && cat "$dir$2"
}
list_tags() { skopeo list-tags $TLS "docker://$1" | jq -r '.Tags | sort | join(" ")'; }
raw_media_type() { skopeo inspect $TLS --raw "docker://$1" | jq -r .mediaType; }

# Build the image; the working container's name is needed by later steps, so this runs outside check.
CTR=$(bh from scratch 2>"$T/from.err") || abort "buildah from scratch" "$(cat "$T/from.err")"
pass "buildah from scratch"
echo "built by buildah" >"$T/hello.txt"
check "buildah copy busybox" bh copy "$CTR" "$(command -v busybox)" /bin/busybox
check "buildah copy a file" bh copy "$CTR" "$T/hello.txt" /hello.txt
check "buildah config" bh config --cmd '/bin/busybox cat /hello.txt' --arch amd64 --os linux "$CTR"
check "buildah commit" bh commit -q "$CTR" localhost/e2e-buildah:v1

check "buildah push (OCI format)" bh push -q $TLS localhost/e2e-buildah:v1 "docker://$IMAGE:oci"
check "buildah push (docker format)" bh push -q $TLS --format docker localhost/e2e-buildah:v1 "docker://$IMAGE:docker"

check "skopeo inspect sees the OCI image" expect_output amd64 inspect_field "$IMAGE:oci" .Architecture
check "it is an OCI manifest" expect_output application/vnd.oci.image.manifest.v1+json raw_media_type "$IMAGE:oci"
check "skopeo inspect sees the docker image" expect_output amd64 inspect_field "$IMAGE:docker" .Architecture
check "it is a docker schema 2 manifest" \
  expect_output application/vnd.docker.distribution.manifest.v2+json raw_media_type "$IMAGE:docker"
check "list-tags shows both tags" expect_output "docker oci" list_tags "$IMAGE"

check "buildah pull of the pushed image" bh pull -q $TLS "$IMAGE:oci"
check "pulled image has the committed file" expect_output "built by buildah" file_in_image "$IMAGE:oci" /hello.txt

exit 0
