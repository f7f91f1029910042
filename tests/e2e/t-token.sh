#!/usr/bin/env bash
# Token mode with real clients: Bearer challenge and /service/token (Basic, anonymous, offline + refresh), the operator CLI, docker/podman/skopeo/buildah/ORAS as admin and developer, a robot, a guest refused a push, anonymous pulls of public projects only, a filtered _catalog, one answer for a wrong password and an unknown user, no secret in the log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=token

if [[ "$E2E_TARGET" == reference ]]; then
  skip "token mode: users, projects, robots, /service/token" "distribution 2.8 has no built-in token server"
  exit 0
fi

require_tools docker dockerd skopeo podman buildah busybox python3 jq curl base64 || exit "$E2E_ABORTED"
python3 -c 'import oras' 2>/dev/null || abort "python module 'oras' is missing (run scripts/install-deps.sh)"
ensure_test_images

# ---------------------------------------------------------------- secrets (only in variables and files under $T)
ADMIN_PASS=$(new_password)
DEV_PASS=$(new_password)
GUEST_PASS=$(new_password)
for p in "$ADMIN_PASS" "$DEV_PASS" "$GUEST_PASS"; do
  [[ ${#p} -ge 20 ]] || abort "generate random passwords" "got '$p'"
done

# A registry of its own in token mode; "admin" is created on first start with ADMIN_PASS
# (handed over through the environment, see lib.sh).
REG_AUTH_MODE=token
REG_ADMIN_PASSWORD=$ADMIN_PASS
start_registry_or_abort "$T/reg"
unset REG_ADMIN_PASSWORD
REG_LOG="$REG_DIR/registry.log"
DATA="$REG_DIR/data"
REALM="$REG_URL/service/token"
SERVICE=berth
TLS=--tls-verify=false
mkdir -p "$T/token" "$T/cli"

# ---------------------------------------------------------------- helpers (more in lib.sh: with_stdin, curl_as, jwt_payload, expect_denied, oras_sdk, ...)
# berth_cli ARGS...: the operator CLI on this registry's data dir (the server is running).
berth_cli() { "$BERTH_BIN" "$@" --data-dir "$DATA"; }

login_with() { with_stdin "$@"; }

# token_url SCOPE...: the token service URL for these scopes
token_url() {
  local url="$REALM?service=$SERVICE" s
  for s in "$@"; do url+="&scope=$(jq -rn --arg s "$s" '$s | @uri')"; done
  printf '%s' "$url"
}

# token_for USER PASS SCOPE...: an access token from GET /service/token with Basic credentials
# (USER "-": anonymous). Prints the token; fails on anything but 200.
token_for() {
  local user=$1 pass=$2 body="$T/token/answer.json" code; shift 2
  if [[ "$user" == - ]]; then
    code=$(curl -s --max-time 30 -o "$body" -w '%{http_code}' "$(token_url "$@")")
  else
    code=$(curl_as "$user" "$pass" -o "$body" -w '%{http_code}' "$(token_url "$@")")
  fi
  [[ "$code" == 200 ]] || { echo "GET /service/token: HTTP $code: $(cat "$body")" >&2; return 1; }
  jq -er .token "$body"
}

# expect_access USER PASS SCOPE JQ-FILTER: the token's claims (decoded) satisfy the filter
expect_access() {
  local token claims
  token=$(token_for "$1" "$2" "$3") || return 1
  claims=$(jwt_payload "$token") || { echo "cannot decode the token"; return 1; }
  echo "claims: $claims"
  jq -e "$4" <<<"$claims" >/dev/null
}

# expect_challenge WANT-CHALLENGE CURL-ARGS...: no credentials -> 401, exactly this
# WWW-Authenticate, error code UNAUTHORIZED
expect_challenge() {
  local want=$1 headers="$T/token/challenge.headers" body="$T/token/challenge.body" code challenge err
  shift
  code=$(curl -s -D "$headers" -o "$body" -w '%{http_code}' --max-time 30 "$@")
  challenge=$(header_of "$headers" WWW-Authenticate)
  err=$(jq -r '.errors[0].code' "$body" 2>/dev/null)
  echo "status $code, WWW-Authenticate: $challenge, error code: $err"
  echo "expected WWW-Authenticate: $want"
  [[ "$code" == 401 && "$challenge" == "$want" && "$err" == UNAUTHORIZED ]]
}

# expect_status CODE CURL-ARGS...
expect_status() {
  local want=$1 got; shift
  got=$(curl -s -o "$T/token/status.body" -w '%{http_code}' --max-time 30 "$@")
  [[ "$got" == "$want" ]] || { echo "expected HTTP $want, got $got: $(cat "$T/token/status.body")"; return 1; }
}

# expect_bearer_status CODE TOKEN URL: CURL with "Authorization: Bearer TOKEN" (header from stdin)
expect_bearer_status() {
  local want=$1 token=$2 url=$3 got
  got=$(printf 'header = "Authorization: Bearer %s"\n' "$token" |
        curl -K - -s -D "$T/token/bearer.headers" -o "$T/token/bearer.body" -w '%{http_code}' --max-time 30 "$url")
  [[ "$got" == "$want" ]] || {
    echo "expected HTTP $want, got $got"; tr -d '\r' <"$T/token/bearer.headers"; cat "$T/token/bearer.body"; return 1; }
}

expect_digest() {  # CREDS REF WANT: skopeo inspect (with these credentials, "" for none) gives WANT
  local creds=() got
  [[ -n "$1" ]] && creds=(--creds "$1")
  got=$(skopeo inspect $TLS "${creds[@]}" "docker://$2" | jq -r .Digest) || return 1
  [[ "$got" == "$3" ]] || { echo "expected $3, got $got"; return 1; }
}

# catalog_as USER PASS (USER "-": anonymous): the token flow for GET /v2/_catalog; prints the
# repositories, one a line. The token is asked for scope registry:catalog:* as clients do.
catalog_as() {
  local token
  token=$(token_for "$1" "$2" 'registry:catalog:*') || return 1
  expect_bearer_status 200 "$token" "$REG_URL/v2/_catalog?n=1000" || return 1
  jq -r '.repositories[]' "$T/token/bearer.body"
}
expect_catalog() {  # USER PASS "HAS..." "HAS-NOT..."
  local list r
  list=$(catalog_as "$1" "$2") || { echo "$list"; return 1; }
  echo "catalog: $(tr '\n' ' ' <<<"$list")"
  for r in $3; do grep -qx -- "$r" <<<"$list" || { echo "missing: $r"; return 1; }; done
  for r in $4; do ! grep -qx -- "$r" <<<"$list" || { echo "must not be listed: $r"; return 1; }; done
}

# answer_of USER PASS URL: status, WWW-Authenticate and body of a request with these credentials
answer_of() {
  local code
  code=$(curl_as "$1" "$2" -D "$T/token/answer.headers" -o "$T/token/answer.body" -w '%{http_code}' "$3")
  printf 'status %s\nWWW-Authenticate: %s\nbody: %s\n' "$code" \
    "$(header_of "$T/token/answer.headers" WWW-Authenticate)" "$(cat "$T/token/answer.body")"
}

V1=$(layout_digest v1)

# ---------------------------------------------------------------- accounts and projects (operator CLI)
# Created before any request names them, so no cache of the running server holds an old answer.
check "berth user add dev (password from stdin)" with_stdin "$DEV_PASS" berth_cli user add dev
check "berth user add guest (password from stdin)" with_stdin "$GUEST_PASS" berth_cli user add guest
check_fails "berth user add refuses a password against the policy" with_stdin "short1A" berth_cli user add weak
cli_users_are() {  # NAME...: `berth user list` shows these users
  local out u
  out=$(berth_cli user list) || return 1
  echo "$out"
  for u in "$@"; do awk 'NR > 1 {print $2}' <<<"$out" | grep -qx -- "$u" || { echo "missing user $u"; return 1; }; done
}
cli_project_public_is() {  # NAME true|false: `berth project list` says so
  local out
  out=$(berth_cli project list) || return 1
  echo "$out"
  [[ "$(awk -v p="$1" '$2 == p {print $3}' <<<"$out")" == "$2" ]]
}
check "berth user list shows admin (first start), dev and guest" cli_users_are admin dev guest
check "berth project create team (private)" berth_cli project create team
jobs_show_the_start_up_purge() {
  berth_cli jobs list --kind purge_uploads | grep -E 'purge_uploads +succeeded +attempts=1' &&
    berth_cli jobs schedules | grep -E '^purge_uploads +0 \* \* \* \*'
}
check "berth jobs: the start-up upload purge succeeded, and it is scheduled hourly" jobs_show_the_start_up_purge
check "berth project create other (private)" berth_cli project create other
check "berth project list: library exists and is public" cli_project_public_is library true
check "berth project list: team is private" cli_project_public_is team false
check "berth member add team dev developer" berth_cli member add team dev developer
check "berth member add team guest guest" berth_cli member add team guest guest
if ! berth_cli robot create ci --project team --actions pull,push >"$T/cli/robot.out" 2>"$T/cli/robot.err"; then
  abort "berth robot create ci --project team --actions pull,push" "$(cat "$T/cli/robot.err")"
fi
ROBOT=$(awk '$1 == "name:" {print $2}' "$T/cli/robot.out")
ROBOT_SECRET=$(awk '$1 == "secret:" {print $2}' "$T/cli/robot.out")
check_eq "berth robot create prints the robot's name" 'robot$team+ci' "$ROBOT"
check "berth robot create prints a secret" test "${#ROBOT_SECRET}" -ge 16

# ---------------------------------------------------------------- 1. the challenge and the token service (curl)
check "GET /v2/ without credentials: 401, Bearer realm=<registry>/service/token, service" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\"" "$REG_URL/v2/"
check "GET a manifest without credentials: the challenge names scope=repository:team/app:pull" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\",scope=\"repository:team/app:pull\"" \
  "$REG_URL/v2/team/app/manifests/v1"
check "POST an upload without credentials: the challenge names scope=repository:team/app:pull,push" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\",scope=\"repository:team/app:pull,push\"" \
  -X POST "$REG_URL/v2/team/app/blobs/uploads/"
check "token for dev (Basic) with scope repository:team/app:pull,push grants pull and push" \
  expect_access dev "$DEV_PASS" 'repository:team/app:pull,push' \
  '.sub == "dev" and .aud == "berth" and .iss == "berth" and
   ([.access[] | select(.type == "repository" and .name == "team/app") | .actions[]] | sort) == ["pull", "push"]'
check "token for guest with scope repository:team/app:pull,push grants pull only" \
  expect_access guest "$GUEST_PASS" 'repository:team/app:pull,push' \
  '([.access[] | select(.name == "team/app") | .actions[]]) == ["pull"]'
check "token for dev with a scope in project other (not a member) grants nothing" \
  expect_access dev "$DEV_PASS" 'repository:other/app:pull,push' '.access == []'
check "anonymous token for a private repository has an empty access list" \
  expect_access - - 'repository:team/app:pull' '.sub == "" and .access == []'
check "anonymous token for a public project (library) grants pull only" \
  expect_access - - 'repository:library/busybox:pull,push' '.access == [{"type": "repository", "name": "library/busybox", "actions": ["pull"]}]'
DEV_TOKEN=$(token_for dev "$DEV_PASS" 'repository:team/app:pull') || DEV_TOKEN=none
check "GET /v2/ with dev's bearer token: 200" expect_bearer_status 200 "$DEV_TOKEN" "$REG_URL/v2/"
tampered_token_refused() {
  expect_bearer_status 401 "${DEV_TOKEN%??}xx" "$REG_URL/v2/" &&
    header_of "$T/token/bearer.headers" WWW-Authenticate | grep -q 'error="invalid_token"'
}
check "GET /v2/ with a tampered token: 401 invalid_token" tampered_token_refused

# offline_token=true: a refresh token, redeemed with the OAuth2 POST form
offline_refresh_token() {
  local code
  code=$(curl_as dev "$DEV_PASS" -o "$T/token/offline.json" -w '%{http_code}' \
    "$(token_url 'repository:team/app:pull')&offline_token=true&client_id=e2e")
  [[ "$code" == 200 ]] || { echo "HTTP $code: $(cat "$T/token/offline.json")"; return 1; }
  jq -e '(.refresh_token | length > 0) and (.token | length > 0)' "$T/token/offline.json" >/dev/null ||
    { echo "no refresh_token in the answer: $(jq -c 'keys' "$T/token/offline.json")"; return 1; }
  jq -j .refresh_token "$T/token/offline.json" >"$T/token/refresh_token"   # -j: no newline in the form value
}
# refresh_status FILE SCOPE: POST grant_type=refresh_token with the refresh token in FILE (not
# argv); prints the status, the answer is in $T/token/refreshed.json
refresh_status() {
  curl -s --max-time 30 -o "$T/token/refreshed.json" -w '%{http_code}' -X POST \
    --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token@$1" \
    --data-urlencode "service=$SERVICE" --data-urlencode client_id=e2e --data-urlencode "scope=$2" "$REALM"
}
redeem_refresh_token() {
  local code
  code=$(refresh_status "$T/token/refresh_token" 'repository:team/app:pull,push')
  [[ "$code" == 200 ]] || { echo "HTTP $code: $(cat "$T/token/refreshed.json")"; return 1; }
  jwt_payload "$(jq -r .access_token "$T/token/refreshed.json")" | tee /dev/stderr |
    jq -e '.sub == "dev" and ([.access[] | select(.name == "team/app") | .actions[]] | sort) == ["pull", "push"]' >/dev/null &&
    jq -e '.scope == "repository:team/app:pull,push"' "$T/token/refreshed.json" >/dev/null
}
check "GET /service/token?offline_token=true answers a refresh_token" offline_refresh_token
check "POST grant_type=refresh_token gives an access token for dev (pull,push on team/app)" redeem_refresh_token
check "the refresh token is not accepted as an access token (401)" \
  expect_bearer_status 401 "$(cat "$T/token/refresh_token" 2>/dev/null)" "$REG_URL/v2/"
password_grant() {  # POST grant_type=password, password from stdin
  local code
  code=$(printf '%s' "$DEV_PASS" | curl -s --max-time 30 -o "$T/token/password.json" -w '%{http_code}' -X POST \
    --data-urlencode grant_type=password --data-urlencode username=dev --data-urlencode password@- \
    --data-urlencode "service=$SERVICE" --data-urlencode client_id=e2e \
    --data-urlencode 'scope=repository:team/app:pull' "$REALM")
  [[ "$code" == 200 ]] || { echo "HTTP $code: $(cat "$T/token/password.json")"; return 1; }
  jq -e '.access_token | length > 0' "$T/token/password.json" >/dev/null
}
check "POST grant_type=password (OAuth2 form) gives an access token" password_grant

# ---------------------------------------------------------------- 2. docker as admin
if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
setup_containers_env   # REGISTRY_AUTH_FILE in $T, empty: skopeo, podman and buildah start without credentials

check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
for ref in team/app:v1 library/busybox:v1 other/secret:v1 nosuchproject/app:v1 team/robot:v1 other/robot:v1 team/guest:v1; do
  check "docker tag $ref" docker tag e2e-local/busybox:v1 "$REG/$ref"
done
# docker turns a 401 with error="insufficient_scope" (what its anonymous token gets) into
# "denied: requested access to the resource is denied" (errcode DENIED; registry/client/errors.go).
check "docker push without login fails (denied: docker's word for insufficient_scope)" \
  expect_failure_saying 'denied: requested access to the resource is denied' docker push "$REG/team/app:v1"
check_fails "docker login as admin with a wrong password fails" \
  login_with "wrong-$ADMIN_PASS" docker login "$REG" -u admin --password-stdin
check "the failed login stored nothing" expect_no_stored_login "$DOCKER_CONFIG/config.json"
check "docker login as admin --password-stdin" login_with "$ADMIN_PASS" docker login "$REG" -u admin --password-stdin
check "docker login stored credentials in DOCKER_CONFIG (temp dir)" expect_stored_login "$DOCKER_CONFIG/config.json"
# docker login asks for offline_token=true and keeps the refresh token instead of the password.
docker_kept_refresh_token_not_password() {  # USER PASS
  local config="$DOCKER_CONFIG/config.json"
  jq -e --arg r "$REG" '.auths[$r].identitytoken | length > 0' "$config" >/dev/null ||
    { echo "no identitytoken for $REG in $config"; return 1; }
  ! grep -qF -- "$2" "$config" || { echo "the password is in $config"; return 1; }
  ! grep -qF -- "$(printf '%s:%s' "$1" "$2" | base64 -w0)" "$config" || { echo "user:password is in $config"; return 1; }
}
check "docker keeps berth's refresh token (identitytoken), not the password" \
  docker_kept_refresh_token_not_password admin "$ADMIN_PASS"
check "docker push team/app:v1 (project created with the CLI)" docker push "$REG/team/app:v1"
check "docker push library/busybox:v1 (public project)" docker push "$REG/library/busybox:v1"
check "docker push other/secret:v1" docker push "$REG/other/secret:v1"
check "docker push into a project that does not exist: denied, berth says so" \
  expect_denied "project nosuchproject does not exist" docker push "$REG/nosuchproject/app:v1"
check "docker rmi team/app:v1" docker rmi "$REG/team/app:v1"
check "docker pull team/app:v1" docker pull "$REG/team/app:v1"
check "docker run the pulled image" \
  bash -c "docker run --rm --network none '$REG/team/app:v1' | grep -qx 'hello from amd64'"
check "docker logout" docker logout "$REG"
check "docker logout removed the credentials" expect_no_stored_login "$DOCKER_CONFIG/config.json"

# ---------------------------------------------------------------- 3. podman, skopeo, buildah, ORAS as a developer
check_fails "podman login as dev with a wrong password fails" \
  login_with "wrong-$DEV_PASS" pm login $TLS -u dev --password-stdin "$REG"
check "podman login as dev --password-stdin" login_with "$DEV_PASS" pm login $TLS -u dev --password-stdin "$REG"
check "podman login stored the credentials in REGISTRY_AUTH_FILE (temp dir)" expect_stored_login "$REGISTRY_AUTH_FILE"
check "podman pull team/app:v1 (pushed by admin)" pm pull -q $TLS "$REG/team/app:v1"
check "podman tag team/podman:v1" pm tag "$REG/team/app:v1" "$REG/team/podman:v1"
check "podman push team/podman:v1" pm push -q $TLS "$REG/team/podman:v1"
check "podman rmi" pm rmi "$REG/team/podman:v1"
check "podman pull team/podman:v1" pm pull -q $TLS "$REG/team/podman:v1"
# podman's first request there is a HEAD (does the blob exist?): a 403 to a HEAD has no body,
# so podman can only say "403 (Forbidden)", not berth's reason.
check "podman push into project other (dev is no member) fails with 403 Forbidden" \
  expect_failure_saying '403 \(Forbidden\)|denied' pm push $TLS "$REG/team/podman:v1" "docker://$REG/other/podman:v1"
check "podman logout" pm logout "$REG"

DEV_CREDS="dev:$DEV_PASS"
# --preserve-digests: without it skopeo may reuse the layer docker pushed to team/app (its blob
# info cache knows both compressions of it) and write a different manifest.
check "skopeo copy --dest-creds (dev) to team/skopeo:v1" \
  skopeo copy -q --preserve-digests --dest-tls-verify=false --dest-creds "$DEV_CREDS" \
  "oci:$IMG/oci:v1" "docker://$REG/team/skopeo:v1"
check "skopeo inspect --creds gives the layout digest" expect_digest "$DEV_CREDS" "$REG/team/skopeo:v1" "$V1"
check "skopeo copy back with --src-creds" \
  skopeo copy -q --src-tls-verify=false --src-creds "$DEV_CREDS" "docker://$REG/team/skopeo:v1" "oci:$T/skopeo-out:v1"
check "skopeo inspect of a private repository without credentials fails with an auth error" \
  expect_auth_failure skopeo inspect $TLS "docker://$REG/team/skopeo:v1"

buildah_build() {
  local ctr
  ctr=$(bh from scratch) || return 1
  bh copy "$ctr" "$(command -v busybox)" /bin/busybox &&
    bh config --cmd '/bin/busybox true' --arch amd64 --os linux "$ctr" &&
    bh commit -q "$ctr" localhost/e2e-token-buildah:v1
}
check "buildah from scratch, copy, commit" buildah_build
check "buildah push --creds (dev) to team/buildah:v1" \
  bh push -q $TLS --creds "$DEV_CREDS" localhost/e2e-token-buildah:v1 "docker://$REG/team/buildah:v1"
check "the buildah image is there (skopeo --creds)" bash -c \
  "skopeo inspect $TLS --creds '$DEV_CREDS' 'docker://$REG/team/buildah:v1' | jq -e '.Architecture == \"amd64\"'"
check "buildah push without credentials fails with an auth error" \
  expect_auth_failure bh push -q $TLS localhost/e2e-token-buildah:v1 "docker://$REG/team/buildah:nocreds"

mkdir -p "$T/oras/out-token" "$T/oras/out-basic"
head -c 100000 /dev/urandom >"$T/oras/artifact.bin"
for backend in token basic; do
  check "oras push (auth_backend=$backend$([[ $backend == token ]] && echo ", pull,push token from /service/token"), dev) to team/oras-$backend:v1" \
    in_dir "$T/oras" oras_as "$DEV_PASS" "$backend" dev push "team/oras-$backend:v1" artifact.bin
  check "oras pull (auth_backend=$backend, dev) of team/oras-$backend:v1" \
    oras_as "$DEV_PASS" "$backend" dev pull "team/oras-$backend:v1" "$T/oras/out-$backend"
  check "oras-pulled file is byte-identical (auth_backend=$backend)" cmp "$T/oras/artifact.bin" "$T/oras/out-$backend/artifact.bin"
done

# ---------------------------------------------------------------- 4. a robot account
check "docker login as $ROBOT (secret from stdin)" login_with "$ROBOT_SECRET" docker login "$REG" -u "$ROBOT" --password-stdin
check "the robot pushes into its project (team/robot:v1)" docker push "$REG/team/robot:v1"
check "the robot's push into another project is denied with berth's reason" \
  expect_denied "is not allowed for this account" docker push "$REG/other/robot:v1"
check "docker logout (robot)" docker logout "$REG"
curl_as "$ROBOT" "$ROBOT_SECRET" -o "$T/token/robot-offline.json" \
  "$(token_url 'repository:team/robot:pull')&offline_token=true" &&
  jq -j '.refresh_token // empty' "$T/token/robot-offline.json" >"$T/token/robot_refresh_token"
check "the robot gets a refresh token (offline_token=true)" test -s "$T/token/robot_refresh_token"
check_eq "the robot's refresh token works before it is disabled (200)" 200 \
  "$(refresh_status "$T/token/robot_refresh_token" 'repository:team/robot:pull')"
check "berth robot disable $ROBOT true" berth_cli robot disable "$ROBOT" true
sleep 6   # the running server's identity caches live 5 s
check "docker login as the disabled robot fails with an auth error" \
  expect_auth_failure login_with "$ROBOT_SECRET" docker login "$REG" -u "$ROBOT" --password-stdin
check_eq "the disabled robot's refresh token is refused (401)" 401 \
  "$(refresh_status "$T/token/robot_refresh_token" 'repository:team/robot:pull')"

# ---------------------------------------------------------------- 5. a guest
check "docker login as guest" login_with "$GUEST_PASS" docker login "$REG" -u guest --password-stdin
check "docker rmi team/app:v1 (before the guest pulls)" docker rmi "$REG/team/app:v1"
check "the guest pulls team/app:v1" docker pull "$REG/team/app:v1"
check "the guest's docker push is denied: 403 with the permission berth names" \
  expect_denied "push on team/guest is not allowed for this account" docker push "$REG/team/guest:v1"
check "docker logout (guest)" docker logout "$REG"
manifest_status_as_admin() {  # REPO REF: status of GET manifest with admin's password (Basic)
  curl_as admin "$ADMIN_PASS" -o /dev/null -w '%{http_code}' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$REG_URL/v2/$1/manifests/$2"
}
check_eq "nothing was stored by the robot's refused push (other/robot:v1 is 404 for admin)" 404 \
  "$(manifest_status_as_admin other/robot v1)"
check_eq "nothing was stored by the guest's refused push (team/guest:v1 is 404 for admin)" 404 \
  "$(manifest_status_as_admin team/guest v1)"

# ---------------------------------------------------------------- 6. anonymous pulls
check "docker rmi library/busybox:v1" docker rmi "$REG/library/busybox:v1"
check "anonymous docker pull of a public project (library/busybox:v1)" docker pull "$REG/library/busybox:v1"
check "anonymous docker pull of a private project fails with an auth error" \
  expect_auth_failure docker pull "$REG/team/app:v1"
check "anonymous skopeo inspect of library/busybox:v1 (no creds) gives the pushed image" \
  skopeo inspect $TLS "docker://$REG/library/busybox:v1"
check "anonymous skopeo copy of library/busybox:v1 to an OCI layout" \
  skopeo copy -q --src-tls-verify=false "docker://$REG/library/busybox:v1" "oci:$T/anon-out:v1"
check "anonymous skopeo inspect of a private project fails with an auth error" \
  expect_auth_failure skopeo inspect $TLS "docker://$REG/team/app:v1"
ANON_TOKEN=$(token_for - - 'repository:team/app:pull') || ANON_TOKEN=none
check "anonymous token on a private manifest: 401" \
  expect_bearer_status 401 "$ANON_TOKEN" "$REG_URL/v2/team/app/manifests/v1"
check "anonymous push to the public project is refused (401)" \
  expect_status 401 -X POST "$REG_URL/v2/library/busybox/blobs/uploads/"

# ---------------------------------------------------------------- 7. the catalog shows what the caller may see
check "_catalog for guest: team and library repositories, not other's" \
  expect_catalog guest "$GUEST_PASS" "team/app team/skopeo library/busybox" "other/secret"
check "_catalog for admin: every repository (other/secret too)" \
  expect_catalog admin "$ADMIN_PASS" "team/app library/busybox other/secret" ""
check "_catalog for anonymous: the public project only" \
  expect_catalog - - "library/busybox" "team/app other/secret"

# ---------------------------------------------------------------- 8. a wrong password and an unknown user look the same
# A success first: it clears berth's failed-login counter for this address (5 failures in a row
# from one address throttle it), so the four failures below are answered, not throttled.
dev_basic_v2() { curl_as dev "$DEV_PASS" -o /dev/null -w '%{http_code}' "$REG_URL/v2/"; }
check_eq "GET /v2/ with dev's password (Basic straight to /v2/): 200" 200 "$(dev_basic_v2)"
WRONG_PASS=$(new_password)
TOKEN_URL=$(token_url 'repository:team/app:pull')
ANSWER_WRONG=$(answer_of dev "$WRONG_PASS" "$TOKEN_URL")
ANSWER_UNKNOWN=$(answer_of nosuchuser "$WRONG_PASS" "$TOKEN_URL")
check_eq "/service/token: an unknown user gets the same answer as a wrong password" "$ANSWER_WRONG" "$ANSWER_UNKNOWN"
check_eq "/service/token: that answer is a 401" 'status 401' "$(head -n 1 <<<"$ANSWER_WRONG")"
ANSWER_WRONG=$(answer_of dev "$WRONG_PASS" "$REG_URL/v2/")
ANSWER_UNKNOWN=$(answer_of nosuchuser "$WRONG_PASS" "$REG_URL/v2/")
check_eq "/v2/: an unknown user gets the same answer as a wrong password" "$ANSWER_WRONG" "$ANSWER_UNKNOWN"
check_eq "/v2/: that answer is a 401" 'status 401' "$(head -n 1 <<<"$ANSWER_WRONG")"
check_eq "after these failures the right password still works (200)" 200 "$(dev_basic_v2)"

# ---------------------------------------------------------------- no secret in the log
check "registry log is not empty (the checks below mean something)" test -s "$REG_LOG"
for who in admin dev guest robot; do
  case $who in
    admin) user=admin pass=$ADMIN_PASS ;;
    dev) user=dev pass=$DEV_PASS ;;
    guest) user=guest pass=$GUEST_PASS ;;
    robot) user=$ROBOT pass=$ROBOT_SECRET ;;
  esac
  check_fails "registry log does not contain $who's password" grep -qF -- "$pass" "$REG_LOG"
  check_fails "registry log does not contain $who's base64 credentials" \
    grep -qF -- "$(printf '%s:%s' "$user" "$pass" | base64 -w0)" "$REG_LOG"
done
check_fails "registry log does not contain the refresh token" grep -qF -- "$(cat "$T/token/refresh_token" 2>/dev/null || echo none)" "$REG_LOG"

exit 0
