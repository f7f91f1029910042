#!/usr/bin/env bash
# TLS with a private CA and real clients: curl (HTTP/2 by ALPN), docker via certs.d, skopeo/podman --cert-dir, clients without the CA refused (x509), a certificate swapped on disk served without restart, mutual TLS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=tls

require_tools openssl ip curl jq docker dockerd skopeo podman python3 || exit "$E2E_ABORTED"
ensure_test_images

# On the first non-loopback IPv4 address: docker does not verify certificates on 127.0.0.0/8 (lib.sh).
HOST_IP=$(host_ipv4)
[[ -n "$HOST_IP" ]] || abort "find a non-loopback IPv4 address" \
  "docker verifies certificates only for registries outside 127.0.0.0/8"

X509='x509: certificate signed by unknown authority'

# ---------------------------------------------------------------- private CAs (openssl, lib.sh: pki_*)
# ca: the registry's CA; ca2: the CA of the renewed certificate swapped in later;
# clients: the CA client certificates need for mutual TLS; stranger: a CA nobody trusts.
make_pki() {
  pki_ca ca && pki_ca ca2 && pki_ca clients && pki_ca stranger &&
    pki_issue ca server serverAuth && pki_issue ca2 server2 serverAuth &&
    pki_issue clients alice clientAuth && pki_issue stranger mallory clientAuth
}
msg=$(make_pki 2>&1) || abort "make private CAs and certificates with openssl" "$msg"

# --cert-dir for skopeo and podman, and docker's certs.d (lib.sh: cert_dir)
CERTS="$T/certs"            # only the CA
MTLS_CERTS="$T/certs-mtls"  # the CA and alice's client certificate
msg=$(cert_dir "$CERTS" ca 2>&1 && cert_dir "$MTLS_CERTS" ca alice 2>&1) || abort "make the cert dirs" "$msg"

# The files the first registry serves; replaced on disk later.
pki_swap server live || abort "copy the server certificate to live.crt/live.key"

# ---------------------------------------------------------------- helpers
expect_http2() {
  local version
  version=$(curl -s -o /dev/null -w '%{http_version}' --http2 --max-time 30 "$@") || return 1
  echo "HTTP version: $version"
  [[ "$version" == 2 ]]
}

expect_digest() {  # CERT-DIR REF: skopeo inspect gives the v1 layout digest
  local got
  got=$(skopeo inspect --cert-dir "$1" "docker://$2" | jq -r .Digest) || return 1
  [[ "$got" == "$V1" ]] || { echo "expected $V1, got $got"; return 1; }
}

# expect_log_quiet: no warning or error in the registry log (refused clients are not the
# server's problem), and the refusals are there at debug level
expect_log_quiet() {
  if grep -E 'WARN|ERROR' "$REG_LOG"; then echo "^ warnings or errors in $REG_LOG"; return 1; fi
  grep -q 'DEBUG.*TLS handshake failed' "$REG_LOG" ||
    { echo "no debug line 'TLS handshake failed' in $REG_LOG"; return 1; }
}

# The registry's own debug lines for refused handshakes (ignored by the reference).
export BERTH_LOG=info,berth::tls=debug
# A handshake that does not finish within 2 s is dropped (berth's [http] tls_handshake_timeout).
export BERTH_HTTP_TLS_HANDSHAKE_TIMEOUT=2
V1=$(layout_digest v1)

# ================================================================ one-way TLS
REG_HOST=$HOST_IP
REG_ANONYMOUS_WRITE=1  # clients reach $HOST_IP from $HOST_IP, not from loopback
REG_TLS_CERT="$PKI/live.crt"
REG_TLS_KEY="$PKI/live.key"
REG_CURL_ARGS=(--cacert "$PKI/ca.crt")
start_registry_or_abort "$T/reg"
REG_LOG="$REG_DIR/registry.log"

# --- curl
check "curl --cacert: GET /v2/ over HTTPS answers 200" expect_code 200 --cacert "$PKI/ca.crt" "$REG_URL/v2/"
check "curl negotiates HTTP/2 by ALPN" expect_http2 --cacert "$PKI/ca.crt" "$REG_URL/v2/"
check "curl --http1.1 is served too" expect_code 200 --http1.1 --cacert "$PKI/ca.crt" "$REG_URL/v2/"
check "curl without the CA fails certificate verification" \
  expect_error 'SSL certificate problem' curl -sS --max-time 30 -o /dev/null "$REG_URL/v2/"
check "plain HTTP to the TLS port is not served" \
  bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 'http://$REG/v2/') != 200 ]]"
check "the served certificate is the configured one (openssl s_client)" expect_served "$PKI/server.crt"

# 40 connections that never start or never finish their TLS handshake (silent, or half a
# ClientHello): closed after the 2 s handshake timeout, not kept for ever.
stalled_handshakes_are_closed() {
  python3 - "$HOST_IP" "$REG_PORT" <<'PY'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
stalled = []
for i in range(40):
    s = socket.create_connection((host, port))
    if i % 2:
        s.sendall(bytes.fromhex("160301020001"))  # a ClientHello's first bytes, never the rest
    stalled.append(s)
time.sleep(4)
still_open = 0
for s in stalled:
    s.settimeout(3)
    try:
        data = s.recv(1024)
        if data and data[0] != 0x15:  # an alert, then the close, counts as closed
            still_open += 1
    except (socket.timeout, TimeoutError):
        still_open += 1
    except ConnectionResetError:
        pass
print(f"{still_open} of {len(stalled)} stalled handshakes still open after 4 s")
sys.exit(1 if still_open else 0)
PY
}
if [[ "$E2E_TARGET" == berth ]]; then
  check "40 stalled TLS handshakes are closed after the 2 s handshake timeout" stalled_handshakes_are_closed
  check "the registry still answers over TLS" expect_code 200 --cacert "$PKI/ca.crt" "$REG_URL/v2/"
fi

# --- skopeo and podman (--cert-dir). Before docker: containers/image also reads
# /etc/docker/certs.d, so once docker's CA is there these clients trust it as well.
setup_containers_env
SKOPEO_IMAGE="$REG/e2e/tls/skopeo"
PODMAN_IMAGE="$REG/e2e/tls/podman"
check "skopeo copy without the CA fails: $X509" \
  expect_error "$X509" skopeo copy -q "oci:$IMG/oci:v1" "docker://$SKOPEO_IMAGE:v1"
check "skopeo copy --dest-cert-dir" \
  skopeo copy -q --dest-cert-dir "$CERTS" "oci:$IMG/oci:v1" "docker://$SKOPEO_IMAGE:v1"
check "skopeo inspect --cert-dir gives the layout digest" expect_digest "$CERTS" "$SKOPEO_IMAGE:v1"
check "podman pull without the CA fails: $X509" expect_error "$X509" pm pull -q "$SKOPEO_IMAGE:v1"
check "podman pull --cert-dir" pm pull -q --cert-dir "$CERTS" "$SKOPEO_IMAGE:v1"
check "podman tag" pm tag "$SKOPEO_IMAGE:v1" "$PODMAN_IMAGE:v1"
check "podman push --cert-dir" pm push -q --cert-dir "$CERTS" "$PODMAN_IMAGE:v1"
check "podman-pushed image is there (skopeo inspect --cert-dir)" \
  skopeo inspect --cert-dir "$CERTS" --raw "docker://$PODMAN_IMAGE:v1"

# --- docker (certs.d)
if ! start_dockerd >"$T/dockerd-start.msg" 2>&1; then
  abort "start a private dockerd" "$(cat "$T/dockerd-start.msg")"
fi
DOCKER_IMAGE="$REG/e2e/tls/docker"
check "docker load of a locally built image" docker load -i "$IMG/busybox-amd64.tar"
check "docker tag" docker tag e2e-local/busybox:v1 "$DOCKER_IMAGE:v1"
check "docker push without the CA fails: $X509" expect_error "$X509" docker push "$DOCKER_IMAGE:v1"
docker_certs_dir "$REG" "$CERTS"
check "docker push with the CA in /etc/docker/certs.d/$REG/ca.crt" docker push "$DOCKER_IMAGE:v1"
check "docker rmi" docker rmi "$DOCKER_IMAGE:v1"
check "docker pull" docker pull "$DOCKER_IMAGE:v1"
check "docker run the pulled image" \
  bash -c "docker run --rm --network none '$DOCKER_IMAGE:v1' | grep -qx 'hello from amd64'"

if [[ "$E2E_TARGET" == berth ]]; then
  check "refused handshakes are logged at debug, no warning or error" expect_log_quiet
else
  skip "refused handshakes are logged at debug, no warning or error" "berth's own logging"
fi

# --- a certificate replaced on disk (as a certificate manager does: write, then rename; lib.sh: pki_swap)
if [[ "$E2E_TARGET" == berth ]]; then
  PID_BEFORE=$REG_PID
  check "swap in a certificate from a new CA (ca2) on disk" pki_swap server2 live
  check "the new certificate is served without a restart (openssl s_client, 15 s)" \
    expect_served "$PKI/server2.crt" 15
  check "curl --cacert with the new CA: 200" expect_code 200 --cacert "$PKI/ca2.crt" "$REG_URL/v2/"
  check "curl --cacert with the old CA now fails" \
    expect_error 'SSL certificate problem' curl -sS --max-time 30 --cacert "$PKI/ca.crt" -o /dev/null "$REG_URL/v2/"
  check "the same registry process is serving" kill -0 "$PID_BEFORE"
  check "the reload is logged" grep -q 'TLS files changed: reloaded' "$REG_LOG"

  check "write a broken certificate file" bash -c "echo 'not a certificate' >'$PKI/live.crt'"
  sleep 5  # two reload polls
  check "with a broken file on disk the previous certificate keeps serving" \
    expect_served "$PKI/server2.crt"
  check "... and answering" expect_code 200 --cacert "$PKI/ca2.crt" "$REG_URL/v2/"
  check "the broken file is logged as a warning" grep -q 'WARN.*cannot be used' "$REG_LOG"
  check "a good file again is picked up" pki_swap server live
  check "... and served (15 s)" expect_served "$PKI/server.crt" 15
else
  for c in "a certificate swapped on disk is served without a restart" \
    "a broken certificate file on disk keeps the previous certificate serving"; do
    skip "$c" "distribution 2.8 reads its certificate once, at start"
  done
fi

# ================================================================ mutual TLS
REG_TLS_CERT="$PKI/server.crt"
REG_TLS_KEY="$PKI/server.key"
REG_TLS_CLIENT_CA="$PKI/clients.crt"
REG_CURL_ARGS=(--cacert "$PKI/ca.crt" --cert "$PKI/alice.crt" --key "$PKI/alice.key")
start_registry_or_abort "$T/reg-mtls"
REG_LOG="$REG_DIR/registry.log"
MTLS_IMAGE="$REG/e2e/tls/mtls"

check "mutual TLS: curl without a client certificate is refused at the handshake" \
  expect_refused --cacert "$PKI/ca.crt" "$REG_URL/v2/"
check "mutual TLS: curl with a client certificate from another CA is refused" \
  expect_refused --cacert "$PKI/ca.crt" --cert "$PKI/mallory.crt" --key "$PKI/mallory.key" "$REG_URL/v2/"
check "mutual TLS: curl with a client certificate signed by the client CA: 200" \
  expect_code 200 --cacert "$PKI/ca.crt" --cert "$PKI/alice.crt" --key "$PKI/alice.key" "$REG_URL/v2/"
check "mutual TLS: skopeo copy with client.cert/client.key in --dest-cert-dir" \
  skopeo copy -q --dest-cert-dir "$MTLS_CERTS" "oci:$IMG/oci:v1" "docker://$MTLS_IMAGE:v1"
check "mutual TLS: skopeo inspect with the client certificate gives the layout digest" \
  expect_digest "$MTLS_CERTS" "$MTLS_IMAGE:v1"
check_fails "mutual TLS: skopeo inspect with only the CA is refused" \
  skopeo inspect --cert-dir "$CERTS" "docker://$MTLS_IMAGE:v1"
docker_certs_dir "$REG" "$MTLS_CERTS"
check "mutual TLS: docker pull with ca.crt, client.cert, client.key in certs.d" docker pull "$MTLS_IMAGE:v1"
if [[ "$E2E_TARGET" == berth ]]; then
  check "mutual TLS: refused clients are logged at debug, no warning or error" expect_log_quiet
else
  skip "mutual TLS: refused clients are logged at debug, no warning or error" "berth's own logging"
fi

exit 0
