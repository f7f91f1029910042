#!/usr/bin/env bash
# Docker Engine against the registry: load, tag, push, pull by tag and by digest, run, multi-arch pull (amd64 and --platform linux/arm64).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=docker

require_tools docker dockerd skopeo jq curl || exit "$E2E_ABORTED"
ensure_test_images
start_registry_or_abort "$T/reg"
if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi

IMAGE="$REG/e2e/busybox"

expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}

# expect_output EXPECTED CMD...: CMD's stdout must be exactly EXPECTED
expect_output() {
  local want=$1 got; shift
  got=$("$@") || { echo "$got"; return 1; }
  expect_equal "$want" "$got"
}

image_arch() { docker image inspect --format '{{.Architecture}}' "$1"; }

# registry_digest REPO TAG: Docker-Content-Digest of a HEAD on the manifest, as docker would ask for it
registry_digest() {
  curl -fsS --max-time 30 -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$REG_URL/v2/$1/manifests/$2" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}

# --- push / pull of a single image
check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
check "docker tag" docker tag e2e-local/busybox:v1 "$IMAGE:v1"
check "docker push" docker push "$IMAGE:v1"

# RepoDigests is filled in by the push: "127.0.0.1:PORT/e2e/busybox@sha256:..."
PUSHED=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE:v1" 2>/dev/null |
         grep "^$IMAGE@" | head -n 1)
DIGEST=${PUSHED#*@}
[[ "$DIGEST" == sha256:* ]] || DIGEST="(docker push recorded no digest)"
check_eq "push reported a digest equal to the registry's Docker-Content-Digest" "$DIGEST" \
  "$(registry_digest e2e/busybox v1 2>/dev/null)"

check "remove every local copy (docker rmi)" docker rmi "$IMAGE:v1" e2e-local/busybox:v1
check_fails "image is gone locally" docker image inspect "$IMAGE:v1"
check "docker pull by tag" docker pull "$IMAGE:v1"
check "pulled image runs (docker run --network none)" \
  expect_output "hello from amd64" docker run --rm --pull never --network none "$IMAGE:v1"

check "remove it again" docker rmi "$IMAGE:v1"
check "docker pull by digest" docker pull "$IMAGE@$DIGEST"
check "image pulled by digest runs" \
  expect_output "hello from amd64" docker run --rm --pull never --network none "$IMAGE@$DIGEST"

# --- a second tag pushed from the same image only uploads a manifest
check "tag and push a second tag" bash -c "docker tag '$IMAGE@$DIGEST' '$IMAGE:v2' && docker push '$IMAGE:v2'"
check_eq "both tags have the same digest" "$DIGEST" "$(registry_digest e2e/busybox v2 2>/dev/null)"

# --- multi-arch: an OCI index (amd64 + arm64) pushed with skopeo copy --all
check "push a two-platform OCI index (skopeo copy --all)" \
  skopeo copy -q --all --dest-tls-verify=false "oci:$IMG/oci:multi" "docker://$REG/e2e/multi:v1"
check "docker pull of the multi-arch tag" docker pull "$REG/e2e/multi:v1"
check "it pulled the amd64 image" expect_output amd64 image_arch "$REG/e2e/multi:v1"
check "the amd64 image runs" \
  expect_output "hello from amd64" docker run --rm --pull never --network none "$REG/e2e/multi:v1"
check "docker pull --platform linux/arm64" docker pull --platform linux/arm64 "$REG/e2e/multi:v1"
check "it pulled the arm64 image" expect_output arm64 image_arch "$REG/e2e/multi:v1"

# --- docker manifest create/push over plain HTTP (a docker manifest list built by the CLI)
check "docker manifest create --insecure" \
  docker manifest create --insecure "$REG/e2e/multi:docker-list" \
    "$REG/e2e/multi@$(layout_digest v1)" "$REG/e2e/multi@$(layout_digest v1-arm64)"
check "docker manifest push --insecure" docker manifest push --insecure "$REG/e2e/multi:docker-list"
check "docker manifest inspect --insecure lists two platforms" \
  expect_output "amd64 arm64" bash -c \
    "docker manifest inspect --insecure '$REG/e2e/multi:docker-list' | jq -r '[.manifests[].platform.architecture] | sort | join(\" \")'"
check "docker pull of the CLI-made list" docker pull "$REG/e2e/multi:docker-list"

exit 0
