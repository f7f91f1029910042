#!/usr/bin/env bash
# berth serve --config <registry:2 config.yml>: a Distribution-style config (filesystem storage, delete enabled, htpasswd auth, http.addr, and settings berth ignores) is checked by `berth config check`, which names every ignored setting; berth serves it in place of registry:2 — 401 without credentials, skopeo push and pull with them, a DELETE — keeps its files in the configured rootdirectory and warns about the ignored settings in its log; a config asking for an external token server is refused by name.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=registry2-config

if [[ "$E2E_TARGET" != berth ]]; then
  skip "berth serve --config config.yml" "reading registry:2's config is berth's"
  exit 0
fi

require_tools htpasswd skopeo jq curl || exit "$E2E_ABORTED"
ensure_test_images

USER_NAME=ci PASS=$(new_password)
mkdir -p "$T/etc" "$T/root"
htpasswd -Bbc "$T/etc/htpasswd" "$USER_NAME" "$PASS" >/dev/null 2>&1 || abort "htpasswd" "cannot create the file"
PORT=$(free_port)
cat >"$T/etc/config.yml" <<YML
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $T/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  secret: a-secret-berth-does-not-need
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: $T/etc/htpasswd
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YML

# The settings of this file, not of the environment of whoever runs the tests.
berth() { env -u BERTH_CONFIG -u BERTH_ADDR -u BERTH_DATA_DIR "$BERTH_BIN" "$@"; }
berth config check --config "$T/etc/config.yml" >"$T/config-check.txt" 2>&1
check_eq "berth config check accepts the file" 0 $?
check_eq "it names each ignored setting (log, cache, secret, headers, health)" 8 \
  "$(grep -c '^warning: .*: registry:2 setting ignored' "$T/config-check.txt")"
check "it shows the mapped values and their source" \
  grep -Eq "^addr +\"127.0.0.1:$PORT\" +\(file\)" "$T/config-check.txt"
check "htpasswd mode with the file's realm" grep -Eq '^realm +"basic-realm" +\(file\)' "$T/config-check.txt"

# Not through the berth function: `$!` of a backgrounded function is its subshell, and
# killing that left the server running after the test.
env -u BERTH_CONFIG -u BERTH_ADDR -u BERTH_DATA_DIR "$BERTH_BIN" serve --config "$T/etc/config.yml" >"$T/serve.log" 2>&1 &
PID=$!
REG_PIDS+=("$PID")
REG="127.0.0.1:$PORT"
for _ in $(seq 100); do curl -s -o /dev/null "http://$REG/v2/" && break; sleep 0.1; done
check "GET /v2/ without credentials is 401 with the file's realm" \
  bash -c "curl -si http://$REG/v2/ | grep -qi 'www-authenticate: basic realm=\"basic-realm\"'"
CREDS="$USER_NAME:$PASS"
check "skopeo pushes with the htpasswd credentials" \
  skopeo copy -q --dest-tls-verify=false --dest-creds "$CREDS" "oci:$IMG/oci:v1" "docker://$REG/team/app:v1"
check_eq "and pulls back the digest it pushed" "$(layout_digest v1)" \
  "$(skopeo inspect --tls-verify=false --creds "$CREDS" "docker://$REG/team/app:v1" | jq -r .Digest)"
check "a manifest DELETE is accepted (storage.delete.enabled)" \
  expect_code 202 -u "$CREDS" -X DELETE "http://$REG/v2/team/app/manifests/$(layout_digest v1)"
check "berth keeps its database and blobs in the rootdirectory" test -f "$T/root/metadata.db" -a -d "$T/root/blobs"
check "the log warns about the ignored settings" grep -q 'health.storagedriver.interval: registry:2 setting ignored' "$T/serve.log"
check "the password is not in the log" bash -c "! grep -qF -- '$PASS' '$T/serve.log'"
kill "$PID"; wait "$PID" 2>/dev/null

cat >"$T/etc/token.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $T/root
http:
  addr: 127.0.0.1:$PORT
auth:
  token:
    realm: https://auth.example.com/token
    service: registry
YML
refused() {
  ! berth serve --config "$T/etc/token.yml" >"$T/token.log" 2>&1 &&
    grep -q 'auth.token.realm is not supported' "$T/token.log"
}
check "an external token server (auth.token) is refused by name, not ignored" refused

exit 0
