#!/usr/bin/env bash
# Token mode over TLS with a private CA, with real clients: the Bearer realm is https, docker login/push/pull via certs.d, podman/skopeo/buildah with --cert-dir and credentials, ORAS over HTTPS, a robot, a guest refused a push (403 reason), anonymous pulls of public projects only, a certificate swapped on disk served without restart (token flow included), mutual TLS in token mode; no secret on a command line or in the log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=token-tls

if [[ "$E2E_TARGET" == reference ]]; then
  skip "token mode over TLS with a private CA" "distribution 2.8 has no built-in token server"
  exit 0
fi

require_tools openssl ip docker dockerd skopeo podman buildah busybox python3 jq curl base64 || exit "$E2E_ABORTED"
python3 -c 'import oras' 2>/dev/null || abort "python module 'oras' is missing (run scripts/install-deps.sh)"
ensure_test_images

# On the first non-loopback IPv4 address: docker does not verify certificates on 127.0.0.0/8 (lib.sh).
HOST_IP=$(host_ipv4)
[[ -n "$HOST_IP" ]] || abort "find a non-loopback IPv4 address" \
  "docker verifies certificates only for registries outside 127.0.0.0/8"

X509='x509: certificate signed by unknown authority'

# ---------------------------------------------------------------- private CAs (openssl, lib.sh: pki_*)
# ca: the registry's CA; ca2: the CA of the renewed certificate swapped in later;
# clients: the CA of client certificates for mutual TLS (alice has one).
make_pki() {
  pki_ca ca && pki_ca ca2 && pki_ca clients &&
    pki_issue ca server serverAuth && pki_issue ca2 server2 serverAuth &&
    pki_issue clients alice clientAuth && pki_swap server live
}
msg=$(make_pki 2>&1) || abort "make private CAs and certificates with openssl" "$msg"
CERTS="$T/certs"            # --cert-dir / certs.d: ca.crt
CERTS2="$T/certs2"          # ca2.crt as ca.crt (after the swap)
MTLS_CERTS="$T/certs-mtls"  # ca.crt, alice's client.cert and client.key
msg=$(cert_dir "$CERTS" ca 2>&1 && cert_dir "$CERTS2" ca2 2>&1 && cert_dir "$MTLS_CERTS" ca alice 2>&1) ||
  abort "make the cert dirs" "$msg"

# ---------------------------------------------------------------- secrets (only in variables and files under $T)
ADMIN_PASS=$(new_password)
DEV_PASS=$(new_password)
GUEST_PASS=$(new_password)
MTLS_ADMIN_PASS=$(new_password)
for p in "$ADMIN_PASS" "$DEV_PASS" "$GUEST_PASS" "$MTLS_ADMIN_PASS"; do
  [[ ${#p} -ge 20 ]] || abort "generate random passwords" "got '$p'"
done

# berth's own crates at debug: the log checks at the end then cover what it logs at debug too.
export BERTH_LOG=debug,sqlx=warn,hyper=info,h2=info,rustls=info,tower=info

# ---------------------------------------------------------------- the registry: token mode and TLS at once
REG_HOST=$HOST_IP
REG_AUTH_MODE=token
REG_ADMIN_PASSWORD=$ADMIN_PASS
REG_TLS_CERT="$PKI/live.crt"
REG_TLS_KEY="$PKI/live.key"
REG_CURL_ARGS=(--cacert "$PKI/ca.crt")
start_registry_or_abort "$T/reg"
unset REG_ADMIN_PASSWORD
REG_LOG="$REG_DIR/registry.log"
DATA="$REG_DIR/data"
SERVICE=berth
REALM="https://$REG/service/token"   # what the challenge must name: the TLS listener's scheme
CA=(--cacert "$PKI/ca.crt")          # curl's trust; the new CA after the swap
mkdir -p "$T/token" "$T/cli"

# ---------------------------------------------------------------- helpers (more in lib.sh)
# berth_cli ARGS...: the operator CLI on this registry's data dir (the server is running).
berth_cli() { "$BERTH_BIN" "$@" --data-dir "$DATA"; }

# challenge_of CURL-ARGS...: the WWW-Authenticate header of a request without credentials
# (status in $T/token/challenge.code)
challenge_of() {
  curl -s -D "$T/token/challenge.headers" -o /dev/null -w '%{http_code}' --max-time 30 "$@" \
    >"$T/token/challenge.code"
  header_of "$T/token/challenge.headers" WWW-Authenticate
}

# expect_challenge WANT CURL-ARGS...: 401 with exactly this WWW-Authenticate
expect_challenge() {
  local want=$1 got; shift
  got=$(challenge_of "$@")
  echo "status $(cat "$T/token/challenge.code"), WWW-Authenticate: $got"
  echo "expected WWW-Authenticate: $want"
  [[ "$(cat "$T/token/challenge.code")" == 401 && "$got" == "$want" ]]
}

# realm_of CURL-ARGS...: the realm named by the challenge of GET /v2/
realm_of() { challenge_of "$@" | sed -n 's/^Bearer realm="\([^"]*\)".*/\1/p'; }

# token_at REALM USER PASS SCOPE CURL-ARGS...: GET REALM?service&scope with Basic credentials
# (USER "-": anonymous), extra CURL-ARGS for TLS; prints the token, fails on anything but 200.
token_at() {
  local realm=$1 user=$2 pass=$3 scope=$4 body="$T/token/answer.json" code url; shift 4
  url="$realm?service=$SERVICE&scope=$(jq -rn --arg s "$scope" '$s | @uri')"
  if [[ "$user" == - ]]; then
    code=$(curl -s --max-time 30 -o "$body" -w '%{http_code}' "$@" "$url")
  else
    code=$(curl_as "$user" "$pass" -o "$body" -w '%{http_code}' "$@" "$url")
  fi
  [[ "$code" == 200 ]] || { echo "GET $url: HTTP $code: $(cat "$body")" >&2; return 1; }
  jq -er .token "$body"
}

# bearer_status TOKEN URL CURL-ARGS...: the status of GET URL with "Authorization: Bearer TOKEN"
# (the header read from stdin, not argv)
bearer_status() {
  local token=$1 url=$2; shift 2
  printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl -K - -s -o "$T/token/bearer.body" -w '%{http_code}' --max-time 30 "$@" "$url"
}

# token_flow USER PASS SCOPE JQ-FILTER URL WANT CURL-ARGS...: what a client does: GET /v2/
# (401 challenge), the realm it names (Basic; USER "-": anonymous) for a token whose claims
# satisfy JQ-FILTER, then URL with that token answers WANT.
token_flow() {
  local user=$1 pass=$2 scope=$3 filter=$4 url=$5 want=$6 realm token claims code; shift 6
  realm=$(realm_of "$@" "$REG_URL/v2/")
  echo "realm: $realm"
  [[ "$realm" == https://* ]] || { echo "the realm is not https"; return 1; }
  token=$(token_at "$realm" "$user" "$pass" "$scope" "$@") || return 1
  claims=$(jwt_payload "$token") || { echo "cannot decode the token"; return 1; }
  echo "claims: $claims"
  jq -e "$filter" <<<"$claims" >/dev/null || { echo "the claims do not satisfy: $filter"; return 1; }
  code=$(bearer_status "$token" "$url" "$@")
  echo "GET $url with the token: $code"
  [[ "$code" == "$want" ]]
}

# grants SUB REPO ACTIONS-JSON: a jq filter: the token is SUB's and grants exactly ACTIONS on REPO
grants() {
  printf '.sub == "%s" and ([.access[] | select(.type == "repository" and .name == "%s") | .actions[]] | sort) == %s' \
    "$1" "$2" "$3"
}

docker_login() {  # USER PASS: docker login $REG, the password on stdin
  with_stdin "$2" docker login "$REG" -u "$1" --password-stdin
}

# docker_kept_no_password USER PASS: docker keeps berth's refresh token (identitytoken, copied
# to $T/token/identitytoken for the log check), not the password
docker_kept_no_password() {
  local config="$DOCKER_CONFIG/config.json"
  jq -je --arg r "$REG" '.auths[$r].identitytoken | select(length > 0)' "$config" >"$T/token/identitytoken" ||
    { echo "no identitytoken for $REG in $config"; return 1; }
  ! grep -qF -- "$2" "$config" || { echo "the password is in $config"; return 1; }
  ! grep -qF -- "$(printf '%s:%s' "$1" "$2" | base64 -w0)" "$config" || { echo "user:password is in $config"; return 1; }
}

expect_digest() {  # WANT SKOPEO-INSPECT-ARGS...: skopeo inspect gives WANT
  local want=$1 got; shift
  got=$(skopeo inspect "$@" | jq -r .Digest) || return 1
  [[ "$got" == "$want" ]] || { echo "expected $want, got $got"; return 1; }
}

# oras_tls PASS BACKEND USER ACTION TARGET ARG: lib.sh's oras_sdk over HTTPS, trusting the CA
oras_tls() { REQUESTS_CA_BUNDLE="$PKI/ca.crt" oras_as "$@"; }
in_dir() { cd "$1" || return 1; shift; "$@"; }   # (check runs it in a subshell: the cd stays there)

# no_secret_in_log LOG USER PASS WHO: neither PASS nor base64(USER:PASS) is in LOG
no_secret_in_log() {
  local log=$1 user=$2 pass=$3
  [[ -s "$log" ]] || { echo "$log is empty"; return 1; }
  ! grep -qF -- "$pass" "$log" || { echo "the password is in $log"; return 1; }
  ! grep -qF -- "$(printf '%s:%s' "$user" "$pass" | base64 -w0)" "$log" ||
    { echo "base64(user:password) is in $log"; return 1; }
}

V1=$(layout_digest v1)

# ---------------------------------------------------------------- accounts and projects (operator CLI)
# Created before any request names them, so no cache of the running server holds an old answer.
check "berth user add dev (password from stdin)" with_stdin "$DEV_PASS" berth_cli user add dev
check "berth user add guest (password from stdin)" with_stdin "$GUEST_PASS" berth_cli user add guest
check "berth project create team (private)" berth_cli project create team
check "berth project create other (private)" berth_cli project create other
check "berth member add team dev developer" berth_cli member add team dev developer
check "berth member add team guest guest" berth_cli member add team guest guest
if ! berth_cli robot create ci --project team --actions pull,push >"$T/cli/robot.out" 2>"$T/cli/robot.err"; then
  abort "berth robot create ci --project team --actions pull,push" "$(cat "$T/cli/robot.err")"
fi
ROBOT=$(awk '$1 == "name:" {print $2}' "$T/cli/robot.out")
ROBOT_SECRET=$(awk '$1 == "secret:" {print $2}' "$T/cli/robot.out")
check_eq "berth robot create prints the robot's name" 'robot$team+ci' "$ROBOT"
check "berth robot create prints a secret" test "${#ROBOT_SECRET}" -ge 16

# ---------------------------------------------------------------- 1. the challenge names the https realm
check "GET /v2/ (curl --cacert): 401, Bearer realm=https://$REG/service/token" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\"" "${CA[@]}" "$REG_URL/v2/"
check "a manifest without credentials: the same https realm, scope=repository:team/app:pull" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\",scope=\"repository:team/app:pull\"" \
  "${CA[@]}" "$REG_URL/v2/team/app/manifests/v1"
check "curl --cacert at the realm the challenge names: a token for dev with pull,push on team/app (Basic), accepted on /v2/" \
  token_flow dev "$DEV_PASS" 'repository:team/app:pull,push' "$(grants dev team/app '["pull","push"]')" \
  "$REG_URL/v2/" 200 "${CA[@]}"
check "curl --cacert at the realm anonymously: pull on library/busybox only" \
  token_flow - - 'repository:library/busybox:pull,push' '.access == [{"type": "repository", "name": "library/busybox", "actions": ["pull"]}]' \
  "$REG_URL/v2/" 200 "${CA[@]}"
check "the realm without the CA fails certificate verification" \
  expect_error 'SSL certificate problem' curl -sS --max-time 30 -o /dev/null "$REALM?service=$SERVICE"
check "plain HTTP to the realm's port is not served" \
  bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 'http://$REG/service/token?service=$SERVICE') != 200 ]]"

# ---------------------------------------------------------------- 2. docker as admin (CA in certs.d)
if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
setup_containers_env   # REGISTRY_AUTH_FILE in $T, empty
check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
for ref in team/app:v1 team/app:v2 library/busybox:v1 team/robot:v1 other/robot:v1 team/guest:v1; do
  check "docker tag $ref" docker tag e2e-local/busybox:v1 "$REG/$ref"
done
check "docker login without the CA fails: $X509" \
  expect_error "$X509" docker_login admin "$ADMIN_PASS"
docker_certs_dir "$REG" "$CERTS"
check "docker login $REG as admin --password-stdin (CA in /etc/docker/certs.d/$REG/ca.crt)" \
  docker_login admin "$ADMIN_PASS"
check "docker keeps berth's refresh token (identitytoken), not the password" \
  docker_kept_no_password admin "$ADMIN_PASS"
check "docker push team/app:v1 (project created with the CLI)" docker push "$REG/team/app:v1"
check "docker push library/busybox:v1 (public project)" docker push "$REG/library/busybox:v1"
check "docker rmi team/app:v1" docker rmi "$REG/team/app:v1"
check "docker pull team/app:v1" docker pull "$REG/team/app:v1"
check "docker run the pulled image" \
  bash -c "docker run --rm --pull never --network none '$REG/team/app:v1' | grep -qx 'hello from amd64'"
check "docker logout" docker logout "$REG"
check "docker logout removed the credentials" expect_no_stored_login "$DOCKER_CONFIG/config.json"

# ---------------------------------------------------------------- 3. podman, skopeo, buildah as a developer (--cert-dir)
# Credentials go in through `login --password-stdin`: `--creds USER:PASSWORD` would put the
# password on the command line (skopeo has no prompt for it, buildah prompts on a terminal only).
# Each tool has its own auth file, so none borrows another's login.
SKOPEO_AUTH="$T/containers/skopeo-auth.json"
BUILDAH_AUTH="$T/containers/buildah-auth.json"
check "podman login --cert-dir as dev --password-stdin" \
  with_stdin "$DEV_PASS" pm login --cert-dir "$CERTS" -u dev --password-stdin "$REG"
check "podman login stored the credentials in REGISTRY_AUTH_FILE (temp dir)" expect_stored_login "$REGISTRY_AUTH_FILE"
check "podman pull --cert-dir team/app:v1 (pushed by admin)" pm pull -q --cert-dir "$CERTS" "$REG/team/app:v1"
check "podman tag team/podman:v1" pm tag "$REG/team/app:v1" "$REG/team/podman:v1"
check "podman push --cert-dir team/podman:v1" pm push -q --cert-dir "$CERTS" "$REG/team/podman:v1"
check "podman rmi" pm rmi "$REG/team/podman:v1"
check "podman pull --cert-dir team/podman:v1" pm pull -q --cert-dir "$CERTS" "$REG/team/podman:v1"
check "podman logout" pm logout "$REG"

check "skopeo login --cert-dir as dev --password-stdin (own auth file)" \
  with_stdin "$DEV_PASS" skopeo login --authfile "$SKOPEO_AUTH" --cert-dir "$CERTS" -u dev --password-stdin "$REG"
# --preserve-digests: without it skopeo may reuse a layer it knows in another compression.
check "skopeo copy --dest-cert-dir --dest-authfile (dev) to team/skopeo:v1" \
  skopeo copy -q --preserve-digests --dest-cert-dir "$CERTS" --dest-authfile "$SKOPEO_AUTH" \
  "oci:$IMG/oci:v1" "docker://$REG/team/skopeo:v1"
check "skopeo inspect --cert-dir --authfile gives the layout digest" \
  expect_digest "$V1" --cert-dir "$CERTS" --authfile "$SKOPEO_AUTH" "docker://$REG/team/skopeo:v1"
check "skopeo copy back with --src-cert-dir --src-authfile" \
  skopeo copy -q --src-cert-dir "$CERTS" --src-authfile "$SKOPEO_AUTH" "docker://$REG/team/skopeo:v1" "oci:$T/skopeo-out:v1"
check "skopeo inspect --cert-dir of a private repository without credentials fails with an auth error" \
  expect_auth_failure skopeo inspect --cert-dir "$CERTS" "docker://$REG/team/skopeo:v1"
check "skopeo logout" skopeo logout --authfile "$SKOPEO_AUTH" "$REG"

buildah_build() {
  local ctr
  ctr=$(bh from scratch) || return 1
  bh copy "$ctr" "$(command -v busybox)" /bin/busybox &&
    bh config --cmd '/bin/busybox true' --arch amd64 --os linux "$ctr" &&
    bh commit -q "$ctr" localhost/e2e-token-tls-buildah:v1
}
check "buildah from scratch, copy, commit" buildah_build
check "buildah login --cert-dir as dev --password-stdin (own auth file)" \
  with_stdin "$DEV_PASS" bh login --authfile "$BUILDAH_AUTH" --cert-dir "$CERTS" -u dev --password-stdin "$REG"
check "buildah push --cert-dir --authfile (dev) to team/buildah:v1" \
  bh push -q --cert-dir "$CERTS" --authfile "$BUILDAH_AUTH" localhost/e2e-token-tls-buildah:v1 "docker://$REG/team/buildah:v1"
check "the buildah image is there (skopeo with buildah's login)" bash -c \
  "skopeo inspect --cert-dir '$CERTS' --authfile '$BUILDAH_AUTH' 'docker://$REG/team/buildah:v1' | jq -e '.Architecture == \"amd64\"'"
check "buildah push --cert-dir without credentials fails with an auth error" \
  expect_auth_failure bh push -q --cert-dir "$CERTS" localhost/e2e-token-tls-buildah:v1 "docker://$REG/team/buildah:nocreds"
check "buildah logout" bh logout --authfile "$BUILDAH_AUTH" "$REG"

# ---------------------------------------------------------------- 4. ORAS SDK over HTTPS (REQUESTS_CA_BUNDLE)
mkdir -p "$T/oras/out-token" "$T/oras/out-basic" "$T/oras/out-noca"
head -c 100000 /dev/urandom >"$T/oras/artifact.bin"
for backend in token basic; do
  check "oras push over HTTPS (auth_backend=$backend$([[ $backend == token ]] && echo ", pull,push token from the https realm"), dev) to team/oras-$backend:v1" \
    in_dir "$T/oras" oras_tls "$DEV_PASS" "$backend" dev push "team/oras-$backend:v1" artifact.bin
  check "oras pull over HTTPS (auth_backend=$backend, dev) of team/oras-$backend:v1" \
    oras_tls "$DEV_PASS" "$backend" dev pull "team/oras-$backend:v1" "$T/oras/out-$backend"
  check "oras-pulled file is byte-identical (auth_backend=$backend)" cmp "$T/oras/artifact.bin" "$T/oras/out-$backend/artifact.bin"
done
check "oras pull without the CA fails certificate verification" \
  expect_error 'CERTIFICATE_VERIFY_FAILED|certificate verify failed' \
  oras_as "$DEV_PASS" token dev pull team/oras-token:v1 "$T/oras/out-noca"

# ---------------------------------------------------------------- 5. a robot account through docker login
check "docker login as $ROBOT (secret from stdin)" docker_login "$ROBOT" "$ROBOT_SECRET"
check "the robot pushes into its project (team/robot:v1)" docker push "$REG/team/robot:v1"
check "the robot's push into another project is denied with berth's reason" \
  expect_denied "is not allowed for this account" docker push "$REG/other/robot:v1"
check "docker logout (robot)" docker logout "$REG"

# ---------------------------------------------------------------- 6. a guest
check "docker login as guest" docker_login guest "$GUEST_PASS"
check "docker rmi team/app:v1 (before the guest pulls)" docker rmi "$REG/team/app:v1"
check "the guest pulls team/app:v1" docker pull "$REG/team/app:v1"
check "the guest's docker push is denied: 403 with the permission berth names" \
  expect_denied "push on team/guest is not allowed for this account" docker push "$REG/team/guest:v1"
check "docker logout (guest)" docker logout "$REG"
# What docker was answered: the guest's token (pull only: it asked for pull,push) on POST
# blob upload gets 403 DENIED with the reason, not a 401 (no other token would do better).
guest_upload_forbidden() {
  local realm token code
  realm=$(realm_of "${CA[@]}" "$REG_URL/v2/")
  token=$(token_at "$realm" guest "$GUEST_PASS" 'repository:team/guest:pull,push' "${CA[@]}") || return 1
  code=$(printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl -K - -s -o "$T/token/guest-upload.body" -w '%{http_code}' --max-time 30 -X POST "${CA[@]}" \
      "$REG_URL/v2/team/guest/blobs/uploads/")
  echo "POST /v2/team/guest/blobs/uploads/ with the guest's token: $code $(cat "$T/token/guest-upload.body")"
  [[ "$code" == 403 ]] &&
    jq -e '.errors[0].code == "DENIED" and (.errors[0].message | contains("push on team/guest is not allowed for this account"))' \
      "$T/token/guest-upload.body" >/dev/null
}
check "curl --cacert: the guest's token on a blob upload is 403 DENIED with the same reason" guest_upload_forbidden
manifest_status_as_admin() {  # REPO REF
  curl_as admin "$ADMIN_PASS" "${CA[@]}" -o /dev/null -w '%{http_code}' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$REG_URL/v2/$1/manifests/$2"
}
check_eq "the robot's refused push stored nothing (other/robot:v1 is 404 for admin)" 404 \
  "$(manifest_status_as_admin other/robot v1)"
check_eq "the guest's refused push stored nothing (team/guest:v1 is 404 for admin)" 404 \
  "$(manifest_status_as_admin team/guest v1)"

# ---------------------------------------------------------------- 7. anonymous
check "no credentials for $REG are stored (logged out)" expect_no_stored_login "$DOCKER_CONFIG/config.json"
check "docker rmi library/busybox:v1" docker rmi "$REG/library/busybox:v1"
check "anonymous docker pull of a public project (library/busybox:v1)" docker pull "$REG/library/busybox:v1"
check "anonymous docker pull of a private project fails with an auth error" \
  expect_auth_failure docker pull "$REG/team/app:v1"
check "anonymous skopeo inspect --cert-dir of library/busybox:v1" \
  skopeo inspect --cert-dir "$CERTS" "docker://$REG/library/busybox:v1"
check "anonymous token (curl --cacert) on a private manifest: 401" \
  token_flow - - 'repository:team/app:pull' '.sub == "" and .access == []' \
  "$REG_URL/v2/team/app/manifests/v1" 401 "${CA[@]}"

# ---------------------------------------------------------------- 8. a certificate swapped on disk, no restart
PID_BEFORE=$REG_PID
check "swap in a certificate from a new CA (ca2) on disk (rename over live.crt/live.key)" pki_swap server2 live
check "the new certificate is served without a restart (openssl s_client, 15 s)" \
  expect_served "$PKI/server2.crt" 15
check "the reload is logged" grep -q 'TLS files changed: reloaded' "$REG_LOG"
check "curl --cacert with the old CA now fails" \
  expect_error 'SSL certificate problem' curl -sS --max-time 30 "${CA[@]}" -o /dev/null "$REG_URL/v2/"
CA=(--cacert "$PKI/ca2.crt")
check "curl --cacert NEWCA: the challenge still names the https realm" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\"" "${CA[@]}" "$REG_URL/v2/"
check "curl --cacert NEWCA: token flow for dev (Basic at the realm), the token reads team/app's manifest" \
  token_flow dev "$DEV_PASS" 'repository:team/app:pull' "$(grants dev team/app '["pull"]')" \
  "$REG_URL/v2/team/app/manifests/v1" 200 "${CA[@]}" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
check "docker pull with only the old CA in certs.d now fails: $X509" \
  expect_error "$X509" docker pull "$REG/library/busybox:v1"
docker_certs_dir "$REG" "$CERTS2"
check "docker login as admin with the new CA in certs.d" docker_login admin "$ADMIN_PASS"
check "docker rmi team/app:v1" docker rmi "$REG/team/app:v1"
check "docker pull team/app:v1 over the new certificate (token flow)" docker pull "$REG/team/app:v1"
check "docker push team/app:v2 over the new certificate" docker push "$REG/team/app:v2"
check "docker logout" docker logout "$REG"
check "anonymous docker pull of library/busybox:v1 over the new certificate" docker pull "$REG/library/busybox:v1"
check "the same registry process is serving (pid $PID_BEFORE)" kill -0 "$PID_BEFORE"
check_eq "... and it is the one started first" "$PID_BEFORE" "$REG_PID"

# ---------------------------------------------------------------- secrets: never in the log
check "the log has berth's debug lines (the checks below cover them)" grep -q 'DEBUG' "$REG_LOG"
check "registry log: no admin password (plain or base64)" no_secret_in_log "$REG_LOG" admin "$ADMIN_PASS"
check "registry log: no dev password (plain or base64)" no_secret_in_log "$REG_LOG" dev "$DEV_PASS"
check "registry log: no guest password (plain or base64)" no_secret_in_log "$REG_LOG" guest "$GUEST_PASS"
check "registry log: no robot secret (plain or base64)" no_secret_in_log "$REG_LOG" "$ROBOT" "$ROBOT_SECRET"
no_refresh_token_in_log() {
  [[ -s "$T/token/identitytoken" ]] || { echo "no refresh token was kept"; return 1; }
  ! grep -qF -- "$(cat "$T/token/identitytoken")" "$REG_LOG" || { echo "the refresh token is in $REG_LOG"; return 1; }
}
check "registry log: not the refresh token docker kept for admin" no_refresh_token_in_log

# ================================================================ 9. mutual TLS in token mode (a second instance)
REG_TLS_CERT="$PKI/server.crt"
REG_TLS_KEY="$PKI/server.key"
REG_TLS_CLIENT_CA="$PKI/clients.crt"
REG_ADMIN_PASSWORD=$MTLS_ADMIN_PASS
REG_CURL_ARGS=(--cacert "$PKI/ca.crt" --cert "$PKI/alice.crt" --key "$PKI/alice.key")
start_registry_or_abort "$T/reg-mtls"
unset REG_ADMIN_PASSWORD
REG_LOG="$REG_DIR/registry.log"
REALM="https://$REG/service/token"
CA=(--cacert "$PKI/ca.crt")
ALICE=(--cert "$PKI/alice.crt" --key "$PKI/alice.key")

check "mutual TLS: curl without a client certificate is refused at the handshake (/v2/)" \
  expect_refused "${CA[@]}" "$REG_URL/v2/"
check "mutual TLS: ... and at the realm (/service/token)" \
  expect_refused "${CA[@]}" "$REALM?service=$SERVICE"
check "mutual TLS: with alice's client certificate, GET /v2/ is the 401 Bearer challenge (https realm)" \
  expect_challenge "Bearer realm=\"$REALM\",service=\"$SERVICE\"" "${CA[@]}" "${ALICE[@]}" "$REG_URL/v2/"
check "mutual TLS: client certificate + Basic at the realm: a token (admin) accepted on /v2/" \
  token_flow admin "$MTLS_ADMIN_PASS" 'repository:library/mtls:pull,push' "$(grants admin library/mtls '["pull","push"]')" \
  "$REG_URL/v2/" 200 "${CA[@]}" "${ALICE[@]}"
docker_certs_dir "$REG" "$CERTS"
check "mutual TLS: docker login with only ca.crt in certs.d fails at the handshake (tls: certificate required)" \
  expect_error 'tls: (certificate required|bad certificate|handshake failure)' docker_login admin "$MTLS_ADMIN_PASS"
docker_certs_dir "$REG" "$MTLS_CERTS"
check "mutual TLS: docker login with ca.crt, client.cert, client.key in certs.d" docker_login admin "$MTLS_ADMIN_PASS"
check "mutual TLS: docker tag library/mtls:v1" docker tag e2e-local/busybox:v1 "$REG/library/mtls:v1"
check "mutual TLS: docker push library/mtls:v1" docker push "$REG/library/mtls:v1"
check "mutual TLS: docker rmi" docker rmi "$REG/library/mtls:v1"
check "mutual TLS: docker pull library/mtls:v1" docker pull "$REG/library/mtls:v1"
check "mutual TLS: docker logout" docker logout "$REG"
check "mutual TLS: registry log has no admin password (plain or base64)" \
  no_secret_in_log "$REG_LOG" admin "$MTLS_ADMIN_PASS"

exit 0
