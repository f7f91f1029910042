#!/usr/bin/env bash
# htpasswd basic auth with real clients: curl challenge, docker login/push/pull/logout, skopeo --creds, podman login/push, wrong passwords, no password in the log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=auth

require_tools htpasswd docker dockerd skopeo podman jq curl base64 || exit "$E2E_ABORTED"
ensure_test_images

USER_NAME=alice
PASS=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
[[ ${#PASS} -ge 16 ]] || abort "generate a random password" "got '${PASS}'"
mkdir -p "$T/auth"
if ! htpasswd -Bbc "$T/auth/htpasswd" "$USER_NAME" "$PASS" >"$T/auth/htpasswd.out" 2>&1; then
  abort "create the htpasswd file" "$(cat "$T/auth/htpasswd.out")"
fi

# A registry of its own (not the one other tests use) that requires basic auth.
REG_HTPASSWD="$T/auth/htpasswd"
start_registry_or_abort "$T/reg"
REG_LOG="$REG_DIR/registry.log"

if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
setup_containers_env   # REGISTRY_AUTH_FILE in $T, empty: skopeo and podman start without credentials
TLS=--tls-verify=false
CREDS="$USER_NAME:$PASS"

# Any client's way of saying "you need (other) credentials".
AUTH_ERROR='unauthorized|authentication required|no basic auth credentials|401'

# expect_status CODE CURL-ARGS...: curl answers exactly CODE
expect_status() {
  local want=$1 got; shift
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@")
  [[ "$got" == "$want" ]] || { echo "expected HTTP $want, got $got"; return 1; }
}

# expect_challenge URL: no credentials -> 401, WWW-Authenticate: Basic realm="berth", code UNAUTHORIZED
expect_challenge() {
  local headers="$T/auth/challenge.headers" body="$T/auth/challenge.body" code challenge err
  code=$(curl -s -D "$headers" -o "$body" -w '%{http_code}' --max-time 30 "$1")
  challenge=$(tr -d '\r' <"$headers" | awk 'tolower($0) ~ /^www-authenticate:/ {sub(/^[^:]*: */, ""); print}')
  err=$(jq -r '.errors[0].code' "$body" 2>/dev/null)
  echo "status $code, WWW-Authenticate: $challenge, error code: $err"
  [[ "$code" == 401 && "$challenge" == 'Basic realm="berth"' && "$err" == UNAUTHORIZED ]]
}

# expect_auth_failure CMD...: CMD fails, and its output says why in terms of authentication
expect_auth_failure() {
  local out rc
  out=$("$@" 2>&1); rc=$?
  echo "$out"
  if [[ $rc == 0 ]]; then echo "expected a failure, but the command succeeded"; return 1; fi
  grep -Eqi "$AUTH_ERROR" <<<"$out" || { echo "the failure does not mention authentication"; return 1; }
}

# login_with PASSWORD CLIENT-LOGIN-CMD...: feed PASSWORD on stdin (never on the command line)
login_with() {
  local password=$1; shift
  printf '%s\n' "$password" | "$@"
}

# expect_stored_login FILE: a client config file holds credentials for $REG
expect_stored_login() {
  jq -e --arg r "$REG" '.auths[$r].auth | length > 0' "$1" >/dev/null ||
    { echo "no credentials for $REG in $1:"; cat "$1"; return 1; }
}
expect_no_stored_login() {
  ! jq -e --arg r "$REG" '.auths[$r].auth // empty | length > 0' "$1" >/dev/null 2>&1 ||
    { echo "credentials for $REG are still in $1"; return 1; }
}

expect_digest() {  # REF: skopeo inspect with credentials gives the v1 layout digest
  local got
  got=$(skopeo inspect $TLS --creds "$CREDS" "docker://$1" | jq -r .Digest) || return 1
  [[ "$got" == "$V1" ]] || { echo "expected $V1, got $got"; return 1; }
}

V1=$(layout_digest v1)
DOCKER_IMAGE="$REG/e2e/auth/docker"
SKOPEO_IMAGE="$REG/e2e/auth/skopeo"
PODMAN_IMAGE="$REG/e2e/auth/podman"

# --- plain HTTP
check "GET /v2/ without credentials: 401, Basic challenge, UNAUTHORIZED" expect_challenge "$REG_URL/v2/"
check "GET /v2/ with valid credentials: 200" expect_status 200 -u "$CREDS" "$REG_URL/v2/"
check "GET /v2/ with a wrong password: 401" expect_status 401 -u "$USER_NAME:wrong-$PASS" "$REG_URL/v2/"
check "GET /v2/ as an unknown user: 401" expect_status 401 -u "mallory:$PASS" "$REG_URL/v2/"
check "POST upload without credentials: 401" expect_status 401 -X POST "$REG_URL/v2/e2e/auth/curl/blobs/uploads/"

# --- docker
check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
check "docker tag" docker tag e2e-local/busybox:v1 "$DOCKER_IMAGE:v1"
check "docker push without login fails with an auth error" expect_auth_failure docker push "$DOCKER_IMAGE:v1"
check_fails "docker login with a wrong password fails" \
  login_with "wrong-$PASS" docker login "$REG" -u "$USER_NAME" --password-stdin
check "the failed login stored nothing" expect_no_stored_login "$DOCKER_CONFIG/config.json"
check "docker login --password-stdin" login_with "$PASS" docker login "$REG" -u "$USER_NAME" --password-stdin
check "docker login stored the credentials in DOCKER_CONFIG (temp dir)" \
  expect_stored_login "$DOCKER_CONFIG/config.json"
check "docker push" docker push "$DOCKER_IMAGE:v1"
check "docker rmi" docker rmi "$DOCKER_IMAGE:v1"
check "docker pull" docker pull "$DOCKER_IMAGE:v1"
check "docker run the pulled image" \
  bash -c "docker run --rm --network none '$DOCKER_IMAGE:v1' | grep -qx 'hello from amd64'"
check "pulled manifest without credentials: 401 challenge" \
  expect_challenge "$REG_URL/v2/e2e/auth/docker/manifests/v1"
check "docker logout" docker logout "$REG"
check "docker logout removed the credentials" expect_no_stored_login "$DOCKER_CONFIG/config.json"
check "docker rmi before pulling again" docker rmi "$DOCKER_IMAGE:v1"
check "docker pull after logout fails with an auth error" expect_auth_failure docker pull "$DOCKER_IMAGE:v1"

# --- skopeo
check "skopeo copy --dest-creds" \
  skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" "oci:$IMG/oci:v1" "docker://$SKOPEO_IMAGE:v1"
check "skopeo inspect --creds gives the layout digest" expect_digest "$SKOPEO_IMAGE:v1"
check "skopeo copy back with --src-creds" \
  skopeo copy -q --src-tls-verify=false --src-creds "$CREDS" "docker://$SKOPEO_IMAGE:v1" "oci:$T/skopeo-out:v1"
check "skopeo copy without credentials fails with an auth error" expect_auth_failure \
  skopeo copy -q --dest-tls-verify=false "oci:$IMG/oci:v1" "docker://$SKOPEO_IMAGE:nocreds"
check "skopeo copy with a wrong password fails with an auth error" expect_auth_failure \
  skopeo copy -q --dest-tls-verify=false --dest-creds "$USER_NAME:wrong-$PASS" "oci:$IMG/oci:v1" "docker://$SKOPEO_IMAGE:badcreds"
check "skopeo inspect without credentials fails with an auth error" expect_auth_failure \
  skopeo inspect $TLS "docker://$SKOPEO_IMAGE:v1"
check_fails "the tags pushed without valid credentials do not exist" \
  skopeo inspect $TLS --creds "$CREDS" --raw "docker://$SKOPEO_IMAGE:nocreds"

# --- podman (REGISTRY_AUTH_FILE is in $T)
check_fails "podman login with a wrong password fails" \
  login_with "wrong-$PASS" pm login $TLS -u "$USER_NAME" --password-stdin "$REG"
check "podman pull without login fails with an auth error" expect_auth_failure pm pull $TLS "$SKOPEO_IMAGE:v1"
check "podman login --password-stdin" login_with "$PASS" pm login $TLS -u "$USER_NAME" --password-stdin "$REG"
check "podman login stored the credentials in REGISTRY_AUTH_FILE (temp dir)" \
  expect_stored_login "$REGISTRY_AUTH_FILE"
check "podman pull" pm pull -q $TLS "$SKOPEO_IMAGE:v1"
check "podman tag" pm tag "$SKOPEO_IMAGE:v1" "$PODMAN_IMAGE:v1"
check "podman push" pm push -q $TLS "$PODMAN_IMAGE:v1"
check "podman-pushed image is there (skopeo --creds)" \
  skopeo inspect $TLS --creds "$CREDS" --raw "docker://$PODMAN_IMAGE:v1"
check "podman logout" pm logout "$REG"
check "podman push after logout fails with an auth error" expect_auth_failure pm push $TLS "$PODMAN_IMAGE:v1"

# --- the password never reaches the log
B64_CREDS=$(printf '%s' "$CREDS" | base64 -w0)
check "registry log is not empty (the check below means something)" test -s "$REG_LOG"
check_fails "registry log does not contain the password" grep -qF -- "$PASS" "$REG_LOG"
check_fails "registry log does not contain the base64 credentials" grep -qF -- "$B64_CREDS" "$REG_LOG"

exit 0
