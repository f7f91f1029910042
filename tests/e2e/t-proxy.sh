#!/usr/bin/env bash
# Proxy-cache projects and mirror mode, berth on HTTPS with a private CA: a registry:2 upstream (Docker Hub's type, so `hub/app` is `library/app` upstream) registered through /api/v2.0/registries; skopeo pulls through berth byte-identical (podman and docker too, from the cache); 50 concurrent cold pulls make one upstream request per blob (counted in registry:2's access log); pushes are refused; with the upstream killed, and then answering 429, cached tags still pull and an uncached one fails naming the upstream's problem.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=proxy

if [[ "$E2E_TARGET" != berth ]]; then
  skip "proxy-cache projects" "a berth feature, on one node here"
  exit 0
fi

require_tools docker-registry skopeo podman docker dockerd containerd ctr openssl ip jq curl python3 sha256sum || exit "$E2E_ABORTED"
ensure_test_images

SK=(--tls-verify=false)
expect_equal() {
  if [[ "$1" != "$2" ]]; then echo "expected: $1"; echo "actual:   $2"; return 1; fi
}

# ---------------------------------------------------------------- the upstream: registry:2
UP_PORT=$(free_port)
UP="127.0.0.1:$UP_PORT"
mkdir -p "$T/up/data"
cat >"$T/up/config.yml" <<YML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage:
  filesystem: {rootdirectory: $T/up/data}
  delete: {enabled: true}
http: {addr: "$UP", secret: berth-e2e-fixed-secret}
YML
start_upstream() {
  env -u REGISTRY_AUTH_FILE docker-registry serve "$T/up/config.yml" >>"$T/up/access.log" 2>&1 &
  UP_PID=$!
  REG_PIDS+=("$UP_PID")
  for _ in $(seq 100); do curl -s -o /dev/null "http://$UP/v2/" && return 0; sleep 0.1; done
  echo "registry:2 did not start"; tail -n 20 "$T/up/access.log"; return 1
}
start_upstream >"$T/up-start.msg" 2>&1 || abort "start registry:2 as the upstream" "$(cat "$T/up-start.msg")"
# `upstream_gets PATH`: how many GETs of PATH registry:2 has answered.
upstream_gets() { grep -c "\"GET $1 HTTP" "$T/up/access.log"; }

push() { skopeo copy -q --dest-tls-verify=false "$@"; }
check "upstream: push library/app:v1 and :v2, user/tool:v1, library/mirrored:v1, someone/else:v1" \
  bash -c "skopeo copy -q --dest-tls-verify=false oci:$IMG/oci:v1 docker://$UP/library/app:v1 &&
           skopeo copy -q --dest-tls-verify=false oci:$IMG/oci:v1-arm64 docker://$UP/library/app:v2 &&
           skopeo copy -q --dest-tls-verify=false oci:$IMG/oci:v1 docker://$UP/user/tool:v1 &&
           skopeo copy -q --dest-tls-verify=false oci:$IMG/oci:v1 docker://$UP/library/mirrored:v1 &&
           skopeo copy -q --dest-tls-verify=false oci:$IMG/oci:v1 docker://$UP/someone/else:v1"

# A fresh image with a 32 MiB layer that nothing has pulled yet, pushed with curl.
push_blob() {  # REPO FILE: monolithic upload
  local location digest
  digest="sha256:$(sha256sum "$2" | cut -d' ' -f1)"
  location=$(curl -fsS -D - -o /dev/null -X POST "http://$UP/v2/$1/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  case "$location" in http*) ;; *) location="http://$UP$location" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
    "$location$([[ $location == *\?* ]] && echo '&' || echo '?')digest=$digest" >/dev/null
  echo "$digest"
}
head -c $((32 * 1024 * 1024)) /dev/urandom >"$T/big.layer"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/big.config"
BIG_LAYER=$(push_blob library/big "$T/big.layer") || abort "upstream: push a 32 MiB layer"
BIG_CONFIG=$(push_blob library/big "$T/big.config") || abort "upstream: push a config"
jq -cn --arg c "$BIG_CONFIG" --argjson cs "$(stat -c %s "$T/big.config")" \
  --arg l "$BIG_LAYER" --argjson ls "$(stat -c %s "$T/big.layer")" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' \
  >"$T/big.manifest"
check "upstream: push library/big:v1 (a 32 MiB layer)" \
  curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$T/big.manifest" "http://$UP/v2/library/big/manifests/v1"

# ---------------------------------------------------------------- berth, a proxy-cache project
ADMIN_PASS=$(new_password)
# berth serves HTTPS with a private CA on this machine's own address (docker verifies
# certificates only outside 127.0.0.0/8): Docker's registry-mirrors and containerd's hosts.toml
# trust the CA as they would in production. curl trusts it through CURL_CA_BUNDLE.
HOST_IP=$(host_ipv4)
[[ -n "$HOST_IP" ]] || abort "find a non-loopback IPv4 address" "berth serves TLS on it"
msg=$({ pki_ca ca && pki_issue ca server serverAuth && cert_dir "$T/certs" ca; } 2>&1) ||
  abort "make a private CA and berth's certificate" "$msg"
export CURL_CA_BUNDLE="$PKI/ca.crt"
REG_HOST=$HOST_IP REG_TLS_CERT="$PKI/server.crt" REG_TLS_KEY="$PKI/server.key"
REG_CURL_ARGS=(--cacert "$PKI/ca.crt")
# Every pull by tag asks the upstream whether the tag moved, so the stale path is exercised.
# Mirror mode: project hub is the default mirror and docker.io's (containerd's ?ns=), quay
# is quay.io's.
export BERTH_PROXY_TAG_TTL=0 BERTH_PROXY_MIRROR=hub BERTH_PROXY_MIRRORS=docker.io=hub,quay.io=quay
REG_AUTH_MODE=token REG_ADMIN_PASSWORD=$ADMIN_PASS start_registry_or_abort "$T/berth"
unset BERTH_PROXY_TAG_TTL BERTH_PROXY_MIRROR BERTH_PROXY_MIRRORS
API="$REG_URL/api/v2.0"
check_eq "berth serves HTTPS on $HOST_IP (a verified certificate for every client below)" \
  "https://$HOST_IP" "${REG_URL%:*}"
api() {  # METHOD PATH [JSON]: prints the status; body in $T/api.body, headers in $T/api.headers
  local args=(-X "$1" -D "$T/api.headers" -o "$T/api.body" -w '%{http_code}' "$API$2")
  [[ -n "${3:-}" ]] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl_as admin "$ADMIN_PASS" "${args[@]}"
}
expect_api() {  # WANT METHOD PATH [JSON]
  local want=$1 got; shift
  got=$(api "$@")
  [[ "$got" == "$want" ]] || { echo "HTTP $got, want $want: $(cat "$T/api.body")"; return 1; }
}

check "POST /registries: registry:2 as a docker-hub upstream (201)" \
  expect_api 201 POST /registries \
  "{\"name\":\"hub\",\"type\":\"docker-hub\",\"url\":\"http://$UP\",\"credential\":{\"type\":\"basic\",\"access_key\":\"puller\",\"access_secret\":\"not-shown-anywhere\"}}"
HUB_ID=$(header_of "$T/api.headers" location | awk -F/ '{print $NF}')
check "GET /registries/ID shows the access key, never the secret" bash -c "
  [[ \$(curl -s -u 'admin:$ADMIN_PASS' '$API/registries/$HUB_ID' | jq -r .credential.access_key) == puller ]] &&
  ! curl -s -u 'admin:$ADMIN_PASS' '$API/registries/$HUB_ID' | grep -q not-shown-anywhere &&
  ! grep -q not-shown-anywhere '$REG_DIR/registry.log'"
check "POST /registries/ping answers 200 for a live upstream" expect_api 200 POST /registries/ping "{\"id\":$HUB_ID}"
check "POST /projects with registry_id makes a proxy-cache project (201)" \
  expect_api 201 POST /projects "{\"project_name\":\"hub\",\"registry_id\":$HUB_ID,\"metadata\":{\"public\":\"true\"}}"
check "DELETE /registries/ID of a registry a project uses: 412" expect_api 412 DELETE "/registries/$HUB_ID"

SRC=(--src-tls-verify=false --src-creds "admin:$ADMIN_PASS")
raw_digest() { echo "sha256:$(skopeo inspect "${SK[@]}" --creds "admin:$ADMIN_PASS" --raw "docker://$1" | sha256sum | cut -d' ' -f1)"; }
pull_v1() { rm -rf "$T/pulled"; skopeo copy -q "${SRC[@]}" "docker://$REG/hub/app:v1" "oci:$T/pulled:v1"; }
check "skopeo pulls hub/app:v1 through the proxy (library/app upstream)" pull_v1
check_eq "the proxied manifest is the upstream's, byte for byte" "$(layout_digest v1)" "$(raw_digest "$REG/hub/app:v1")"

# cached REPO TAG: wait until berth has stored the tag (its blobs are fetched first).
cached() {
  for _ in $(seq 150); do
    curl -s -u "admin:$ADMIN_PASS" "$API/projects/hub/repositories/$1/artifacts?with_tag=true" |
      jq -e --arg t "$2" 'any(.[]; any(.tags[]?; .name == $t))' >/dev/null && return 0
    sleep 0.2
  done
  echo "hub/$1:$2 was never cached"; return 1
}
check "hub/app:v1 is cached (an artifact of the proxy project)" cached app v1

# ---------------------------------------------------------------- mirror mode (no prefix)
# The same registry:2 as a second upstream, of the plain type (no library/ mapping), for
# project quay: containerd's quay.io.
register_quay() {
  expect_api 201 POST /registries "{\"name\":\"quay\",\"type\":\"docker-registry\",\"url\":\"http://$UP\"}" || return 1
  local id
  id=$(header_of "$T/api.headers" location | awk -F/ '{print $NF}')
  expect_api 201 POST /projects "{\"project_name\":\"quay\",\"registry_id\":$id,\"metadata\":{\"public\":\"true\"}}"
}
check "POST /registries and /projects: quay, a second proxy-cache project" register_quay
anon_digest() {  # PATH: the digest an anonymous GET of a manifest answers
  curl -fsS -D - -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$REG_URL$1" |
    tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}'
}
check_eq "anonymous GET /v2/library/app/manifests/v1 (no prefix) is the upstream's library/app:v1" \
  "$(layout_digest v1)" "$(anon_digest /v2/library/app/manifests/v1)"
check_eq "?ns=quay.io routes user/tool to project quay (plain upstream user/tool)" \
  "$(layout_digest v1)" "$(anon_digest '/v2/user/tool/manifests/v1?ns=quay.io')"

docker_certs_dir "$REG" "$T/certs"
if start_dockerd --registry-mirror "$REG_URL" >"$T/dockerd-start.msg" 2>&1; then
  docker_mirror_pull() {  # docker knows nothing of berth: docker.io names only
    docker pull -q "$1" >/dev/null && docker image inspect "$1" >/dev/null
  }
  check "docker with registry-mirrors pulls mirrored:v1 (library/mirrored upstream)" docker_mirror_pull mirrored:v1
  check "docker with registry-mirrors pulls someone/else:v1" docker_mirror_pull someone/else:v1
  check "berth served it: hub/library/mirrored:v1 is cached" cached library%252Fmirrored v1
  check "berth served it: hub/someone/else:v1 is cached" cached someone%252Felse v1
  stop_dockerd
else
  fail "start a private dockerd with --registry-mirror" "$(cat "$T/dockerd-start.msg")"
fi

# containerd of our own, two upstreams in its hosts dir: docker.io and quay.io, both berth.
start_containerd() {
  mkdir -p "$T/ctd"
  cat >"$T/ctd/config.toml" <<TOML
version = 2
root = "$T/ctd/root"
state = "$T/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$T/ctd/containerd.sock"
TOML
  containerd --config "$T/ctd/config.toml" >"$T/ctd/containerd.log" 2>&1 &
  CTD_PID=$!
  REG_PIDS+=("$CTD_PID")
  for _ in $(seq 100); do ctr --address "$T/ctd/containerd.sock" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start"; tail -n 20 "$T/ctd/containerd.log"; return 1
}
for host in docker.io quay.io; do
  mkdir -p "$T/certs.d/$host"
  printf 'server = "https://%s"\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n  ca = "%s"\n' \
    "$host" "$REG_URL" "$PKI/ca.crt" >"$T/certs.d/$host/hosts.toml"
done
if start_containerd >"$T/ctd-start.msg" 2>&1; then
  ctr_pull() {
    ctr --address "$T/ctd/containerd.sock" images pull --snapshotter native \
      --hosts-dir "$T/certs.d" "$1" >"$T/ctr.out" 2>&1 || { tail -n 5 "$T/ctr.out"; return 1; }
  }
  check "containerd (hosts.toml for docker.io) pulls docker.io/library/app:v1 through berth" ctr_pull docker.io/library/app:v1
  check "containerd (hosts.toml for quay.io) pulls quay.io/user/tool:v1 through berth" ctr_pull quay.io/user/tool:v1
  in_quay() {
    curl -s -u "admin:$ADMIN_PASS" "$API/projects/quay/repositories" |
      jq -e 'any(.[]; .name == "quay/user/tool")' >/dev/null
  }
  check "containerd's ?ns=quay.io pulls went to project quay" in_quay
else
  fail "start containerd" "$(cat "$T/ctd-start.msg")"
fi

# podman: a registries.conf mirror for docker.io, no prefix.
setup_containers_env
cat >"$T/registries.conf" <<CONF
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "$REG"
CONF
pm_mirror_pull() {
  CONTAINERS_REGISTRIES_CONF="$T/registries.conf" \
    pm pull -q --cert-dir "$T/certs" docker.io/library/app:v1 >/dev/null
}
check "podman with a registries.conf mirror pulls docker.io/library/app:v1 through berth" pm_mirror_pull

# ---------------------------------------------------------------- 50 concurrent cold pulls
one_pull() {  # a client: the manifest, then its config and layer
  curl_as admin "$ADMIN_PASS" -f -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$REG_URL/v2/hub/big/manifests/v1" &&
  curl_as admin "$ADMIN_PASS" -f -o /dev/null "$REG_URL/v2/hub/big/blobs/$BIG_CONFIG" &&
  curl_as admin "$ADMIN_PASS" -f "$REG_URL/v2/hub/big/blobs/$BIG_LAYER" | sha256sum | cut -d' ' -f1
}
fifty_pulls() {
  local i pids=() bad=0
  for i in $(seq 50); do one_pull >"$T/pull.$i" 2>&1 & pids+=($!); done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || bad=$((bad + 1)); done
  for i in $(seq 50); do [[ "$(cat "$T/pull.$i")" == "${BIG_LAYER#sha256:}" ]] || bad=$((bad + 1)); done
  [[ $bad == 0 ]] || { echo "$bad of 50 pulls failed or got other bytes"; cat "$T/pull.1"; return 1; }
}
check "50 concurrent cold pulls of hub/big:v1 all get the 32 MiB layer intact" fifty_pulls
check "hub/big:v1 is cached" cached big v1
check_eq "registry:2 served the layer once, the config once" "1 1" \
  "$(upstream_gets "/v2/library/big/blobs/$BIG_LAYER") $(upstream_gets "/v2/library/big/blobs/$BIG_CONFIG")"

# ---------------------------------------------------------------- pushes are refused
check "a push into the proxy project is refused (denied, naming the proxy cache)" \
  expect_error 'proxy cache' skopeo copy --dest-tls-verify=false --dest-creds "admin:$ADMIN_PASS" \
  "oci:$IMG/oci:v1" "docker://$REG/hub/mine:v1"

# ---------------------------------------------------------------- the upstream killed
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null
check "upstream killed: skopeo still pulls the cached hub/app:v1" pull_v1
setup_containers_env
pm_pull() { pm pull -q --tls-verify=false --creds "admin:$ADMIN_PASS" "$REG/hub/app:v1" >/dev/null; }
check "upstream killed: podman pulls the cached hub/app:v1" pm_pull
if start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  docker_pull() {
    with_stdin "$ADMIN_PASS" docker login "$REG" -u admin --password-stdin >/dev/null &&
    docker pull -q "$REG/hub/app:v1" >/dev/null
  }
  check "upstream killed: docker pulls the cached hub/app:v1" docker_pull
  stop_dockerd
else
  fail "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
if [[ -n "${CTD_PID:-}" ]]; then
  check "upstream killed: containerd (docker.io mirror) still pulls docker.io/library/app:v1" ctr_pull docker.io/library/app:v1
fi
pm_mirror_pull_again() { pm rmi -f docker.io/library/app:v1 >/dev/null 2>&1; pm_mirror_pull; }
check "upstream killed: podman (registries.conf mirror) pulls docker.io/library/app:v1 again" pm_mirror_pull_again
check "upstream killed: an uncached tag fails naming the upstream" \
  expect_error "cannot be reached|$UP" skopeo copy -q "${SRC[@]}" "docker://$REG/hub/app:v2" "oci:$T/pulled-v2:v2"

# ---------------------------------------------------------------- the upstream rate-limited
cat >"$T/limited.py" <<'PY'
import http.server, sys
class Limited(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        self.send_response(429)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body
    def do_GET(self):
        self.wfile.write(self.answer(b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit reached"}]}'))
    def do_HEAD(self):
        self.answer(b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit reached"}]}')
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Limited).serve_forever()
PY
python3 "$T/limited.py" "$UP_PORT" >"$T/limited.log" 2>&1 &
LIMITED_PID=$!
REG_PIDS+=("$LIMITED_PID")
for _ in $(seq 50); do curl -s -o /dev/null "http://$UP/v2/" && break; sleep 0.1; done
check "upstream answering 429: skopeo still pulls the cached hub/app:v1" pull_v1
check "upstream answering 429: an uncached tag fails with its TOOMANYREQUESTS message" \
  expect_error "TOOMANYREQUESTS|too many requests|pull rate limit reached" \
  skopeo copy -q "${SRC[@]}" "docker://$REG/hub/app:v2" "oci:$T/pulled-v2:v2"
check "upstream answering 429: Retry-After is passed through" bash -c "
  curl -s -u 'admin:$ADMIN_PASS' -D - -o /dev/null '$REG_URL/v2/hub/app/manifests/v2' |
  tr -d '\r' | grep -qi '^retry-after: 30$'"
