# Shared helpers for berth's end-to-end tests: temp dir, registry start/stop, private dockerd/podman/buildah, test images, checks.
#
# Sourced by run.sh and by every t-*.sh. A t-*.sh can also be run on its own
# (`bash tests/e2e/t-skopeo.sh`); it then owns its temp dir and prints its own summary line.
#
# Environment:
#   E2E_TARGET          berth (default), reference (/usr/bin/docker-registry, distribution 2.8), or
#                       cluster (two berth nodes on PostgreSQL + S3 behind nginx; see cluster.sh)
#   BERTH_BIN           berth binary (default target/debug/berth, relative to the repo root)
#   E2E_CHECK_TIMEOUT   seconds one check may take before it is killed and counted as failed (default 180)
#   E2E_KEEP=1          keep the temp dir after the run (its path is printed)
#   E2E_WORK            set by run.sh for its children: the shared temp dir of this run
#   REG_HTPASSWD        if set (by a t-*.sh, before start_registry): htpasswd file for basic auth, realm "berth"
#   REG_HOST            if set (likewise): listen on this IP instead of 127.0.0.1
#   REG_TLS_CERT, REG_TLS_KEY   if set (likewise): serve HTTPS with these PEM files; REG_URL is https://
#   REG_TLS_CLIENT_CA   if set too: require client certificates signed by this CA (mutual TLS)
#   REG_CURL_ARGS       array, if set: extra curl arguments for the readiness probe (--cacert, --cert, --key)
#   REG_ANONYMOUS_WRITE=1   berth accepts pushes from non-loopback clients (for REG_HOST)
#   REG_AUTH_MODE       if "token" (berth only; set by a t-*.sh before start_registry): token mode,
#                       with REG_ADMIN_PASSWORD as the password of the first-start user "admin"
#   E2E_STORAGE=s3      berth only: blobs in S3 — each registry gets its own bucket on a
#                       moto_server this process starts on 127.0.0.1 ([storage] backend = "s3",
#                       blob GETs redirected to presigned URLs; the cluster's moto_server when it runs)
#   E2E_META=postgres   berth only: metadata in PostgreSQL — each registry gets its own database
#                       (named after its directory) on the PostgreSQL of cluster.sh, started
#                       by the first registry that needs it unless run.sh did

set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_TARGET=${E2E_TARGET:-berth}
BERTH_BIN=${BERTH_BIN:-target/debug/berth}
case "$BERTH_BIN" in /*) ;; *) BERTH_BIN="$REPO_ROOT/$BERTH_BIN" ;; esac
E2E_CHECK_TIMEOUT=${E2E_CHECK_TIMEOUT:-180}
E2E_GROUP=${E2E_GROUP:-$(basename "$0" .sh)}
# A t-*.sh exits with this status after abort(): its failure is already recorded.
E2E_ABORTED=3

case "$E2E_TARGET" in
  berth|reference|cluster) ;;
  *) echo "E2E_TARGET must be berth, reference or cluster, not '$E2E_TARGET'" >&2; exit 2 ;;
esac
source "$E2E_DIR/cluster.sh"

# ---------------------------------------------------------------- temp dirs and cleanup
# E2E_WORK: one dir per run, shared by run.sh and its children (test images live here).
# T: this process's own dir inside it (registries, docker, podman state).
if [[ -z "${E2E_WORK:-}" ]]; then
  E2E_WORK=$(mktemp -d /tmp/berth-e2e.XXXXXX)
  E2E_OWNER=1
else
  E2E_OWNER=0
fi
export E2E_WORK E2E_TARGET BERTH_BIN E2E_CHECK_TIMEOUT
E2E_RESULTS="$E2E_WORK/results"
touch "$E2E_RESULTS"
T=$(mktemp -d "$E2E_WORK/$(basename "$0" .sh).XXXX")
IMG="$E2E_WORK/images"

REG_PIDS=()      # every registry this process started
MOTO_PID=""      # the S3 server for E2E_STORAGE=s3
MOTO_URL=""
DOCKERD_PID=""
DOCKER_EXEC_ROOT=""
REMOVE_ON_EXIT=() # paths outside the temp dir that a test had to create (e.g. /etc/docker/certs.d/HOST:PORT)
CHECK_PID=""     # process group of the check running now (killed if we are interrupted)

cleanup() {
  local rc=$?
  local pid
  [[ -n "$CHECK_PID" ]] && kill -KILL -- "-$CHECK_PID" 2>/dev/null
  # nginx must stop by itself: killed, its master would leave its workers (and port) behind.
  [[ "$E2E_TARGET" == cluster ]] && cluster_stop TERM
  for pid in "${REG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  [[ -n "$MOTO_PID" ]] && kill -KILL "$MOTO_PID" 2>/dev/null && wait "$MOTO_PID" 2>/dev/null
  stop_dockerd
  local path
  for path in "${REMOVE_ON_EXIT[@]}"; do rm -rf -- "$path"; done
  if [[ "$E2E_OWNER" == 1 ]]; then
    cluster_deps_stop   # if they were started (the cluster, or E2E_META=postgres)
    # Anything still mounted under the temp dir (should be nothing) would make rm fail.
    grep -o " $E2E_WORK[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    [[ "${E2E_KEEP:-0}" == 1 ]] && echo "# temp dir kept: $E2E_WORK"
    summary; rc=$?
    [[ "${E2E_KEEP:-0}" == 1 ]] || rm -rf "$E2E_WORK"
    exit "$rc"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- checks
# Results are appended to $E2E_RESULTS (one line per check) so run.sh can count them
# across the separate processes of the t-*.sh files.

pass() {
  echo "ok - $E2E_GROUP: $1"
  printf 'ok\t%s: %s\n' "$E2E_GROUP" "$1" >>"$E2E_RESULTS"
}

# fail NAME [DETAIL...]: record a failure; DETAIL lines are printed indented under it.
fail() {
  local name=$1; shift
  echo "FAIL - $E2E_GROUP: $name"
  if [[ $# -gt 0 ]]; then printf '%s\n' "$@" | sed 's/^/#   /'; fi
  printf 'FAIL\t%s: %s\n' "$E2E_GROUP" "$name" >>"$E2E_RESULTS"
}

# skip NAME REASON: a check that cannot apply to this target (e.g. referrers API on
# distribution 2.8). Never used for a missing tool: that is a failure.
skip() {
  echo "skip - $E2E_GROUP: $1 (not supported by E2E_TARGET=$E2E_TARGET: $2)"
  printf 'skip\t%s: %s\n' "$E2E_GROUP" "$1" >>"$E2E_RESULTS"
}

# abort NAME [DETAIL...]: record a failure and stop this test file (later checks would be meaningless).
abort() {
  fail "$@"
  exit "$E2E_ABORTED"
}

# check NAME CMD...: run CMD (a command or shell function) in a subshell with its output
# captured; pass if it exits 0. On failure the last lines of its output are shown.
# CMD runs in its own process group so a hung client can be killed after E2E_CHECK_TIMEOUT.
# Because CMD runs in a subshell it cannot set variables for the caller.
check() {
  local name=$1; shift
  local out="$T/check.out" rc ticks=0
  set -m
  ( "$@" ) >"$out" 2>&1 </dev/null &
  local pid=$!
  CHECK_PID=$pid
  set +m
  while kill -0 "$pid" 2>/dev/null; do
    if (( ticks >= E2E_CHECK_TIMEOUT * 10 )); then
      echo "check timed out after ${E2E_CHECK_TIMEOUT}s: killed" >>"$out"
      kill -TERM -- "-$pid" 2>/dev/null; sleep 1; kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    sleep 0.1
    ticks=$((ticks + 1))
  done
  wait "$pid"; rc=$?
  CHECK_PID=""
  if [[ $rc == 0 ]]; then
    pass "$name"
    return 0
  fi
  fail "$name" "command: $*" "exit status: $rc" "$(tail -n 15 "$out")"
  return 1
}

# check_fails NAME CMD...: like check, but CMD must exit non-zero.
check_fails() {
  local name=$1; shift
  check "$name" expect_failure "$@"
}
expect_failure() {
  if "$@"; then echo "expected a failure, but the command succeeded"; return 1; fi
  return 0
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
  if [[ "$2" == "$3" ]]; then pass "$1"; return 0; fi
  fail "$1" "expected: $2" "actual:   $3"
  return 1
}

# summary: the one final line; exit status 1 if anything failed.
summary() {
  local passed failed skipped
  passed=$(grep -c '^ok' "$E2E_RESULTS" 2>/dev/null || true)
  failed=$(grep -c '^FAIL' "$E2E_RESULTS" 2>/dev/null || true)
  skipped=$(grep -c '^skip' "$E2E_RESULTS" 2>/dev/null || true)
  if [[ "$skipped" != 0 ]]; then
    echo "# $skipped check(s) not run: unsupported by E2E_TARGET=$E2E_TARGET (see 'skip -' lines)"
  fi
  echo "e2e: $passed passed, $failed failed"
  [[ "$failed" == 0 ]]
}

# require_tools TOOL...: every missing tool is a recorded failure.
require_tools() {
  local t missing=0
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      fail "required tool '$t' is missing (run scripts/install-deps.sh)"
      missing=1
    fi
  done
  return $missing
}

# ---------------------------------------------------------------- registry under test
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# s3_bucket_env: start moto_server once per process (E2E_STORAGE=s3), create a fresh bucket
# and set S3_ENV to the BERTH_STORAGE_* settings for it.
s3_bucket_env() {
  [[ -z "$MOTO_URL" && -n "${E2E_S3_PORT:-}" ]] && MOTO_URL="http://127.0.0.1:$E2E_S3_PORT"
  if [[ -z "$MOTO_URL" ]]; then
    local port
    port=$(free_port)
    command -v moto_server >/dev/null || { echo "moto_server not found (scripts/install-deps.sh)"; return 1; }
    moto_server -H 127.0.0.1 -p "$port" >>"$T/moto.log" 2>&1 &
    MOTO_PID=$!
    MOTO_URL="http://127.0.0.1:$port"
    local i
    for i in $(seq 1 100); do
      curl -fsS -o /dev/null "$MOTO_URL/" 2>/dev/null && break
      sleep 0.1
    done
  fi
  local bucket
  bucket="e2e-$(basename "$REG_DIR" | tr -cd 'a-z0-9')-$RANDOM"
  curl -fsS -o /dev/null -X PUT "$MOTO_URL/$bucket" || { echo "cannot create bucket $bucket on moto"; return 1; }
  S3_ENV=("BERTH_STORAGE_BACKEND=s3" "BERTH_STORAGE_S3_ENDPOINT=$MOTO_URL" "BERTH_STORAGE_S3_BUCKET=$bucket"
          "BERTH_STORAGE_S3_PREFIX=berth" "BERTH_STORAGE_S3_ALLOW_HTTP=true"
          "BERTH_STORAGE_S3_ACCESS_KEY=e2e" "BERTH_STORAGE_S3_SECRET_KEY=e2e-secret")
}

# start_registry DIR [PORT]: start the E2E_TARGET registry with its data in DIR/data,
# listening on 127.0.0.1:PORT (a free port if not given; REG_HOST instead of 127.0.0.1).
# Sets REG_DIR, REG_PORT, REG (host:port), REG_URL and REG_PID. Waits until GET /v2/
# answers 200 (10 s). With REG_HTPASSWD set, the registry requires basic auth (realm
# "berth") against that file, and an unauthenticated GET /v2/ answering 401 counts as
# ready. With REG_TLS_CERT/REG_TLS_KEY (and REG_TLS_CLIENT_CA) it serves HTTPS.
# With REG_AUTH_MODE=token (berth only), berth runs in token mode (BERTH_AUTH_MODE=token) and
# creates "admin" with REG_ADMIN_PASSWORD on first start (through the environment, never argv);
# the 401 Bearer challenge of GET /v2/ counts as ready.
start_registry() {
  REG_DIR=$1
  REG_PORT=${2:-$(free_port)}
  REG="${REG_HOST:-127.0.0.1}:$REG_PORT"
  REG_URL="http://$REG"
  local ready=200 berth_env=() tls_yaml=""
  if [[ -n "${REG_HTPASSWD:-}" ]]; then
    ready=401
    berth_env=("BERTH_HTPASSWD=$REG_HTPASSWD" "BERTH_REALM=berth")
  fi
  if [[ -n "${REG_TLS_CERT:-}" ]]; then
    REG_URL="https://$REG"
    berth_env+=("BERTH_TLS_CERTIFICATE=$REG_TLS_CERT" "BERTH_TLS_KEY=$REG_TLS_KEY")
    tls_yaml=$'  tls:\n'"    certificate: $REG_TLS_CERT"$'\n'"    key: $REG_TLS_KEY"
    if [[ -n "${REG_TLS_CLIENT_CA:-}" ]]; then
      berth_env+=("BERTH_TLS_CLIENT_CA=$REG_TLS_CLIENT_CA")
      tls_yaml+=$'\n    clientcas:\n'"      - $REG_TLS_CLIENT_CA"
    fi
  fi
  if [[ "${REG_ANONYMOUS_WRITE:-0}" == 1 ]]; then
    berth_env+=("BERTH_ANONYMOUS_WRITE=true")
  fi
  if [[ "${REG_AUTH_MODE:-}" == token ]]; then
    if [[ "$E2E_TARGET" == reference ]]; then
      echo "REG_AUTH_MODE=token needs E2E_TARGET=berth (distribution 2.8 has no token server)"
      return 1
    fi
    ready=401
    berth_env+=("BERTH_AUTH_MODE=token" "BERTH_ADMIN_PASSWORD=${REG_ADMIN_PASSWORD:-}")
  fi
  mkdir -p "$REG_DIR/data"
  if [[ "$E2E_TARGET" == cluster || "${E2E_META:-sqlite}" == postgres ]]; then
    cluster_deps_start || return 1
  fi
  if [[ "${E2E_STORAGE:-filesystem}" == s3 ]]; then
    [[ "$E2E_TARGET" == berth ]] || { echo "E2E_STORAGE=s3 needs E2E_TARGET=berth"; return 1; }
    # A restart on the same data dir keeps its bucket.
    if [[ ! -f "$REG_DIR/s3.env" ]]; then
      s3_bucket_env || return 1
      printf '%s\n' "${S3_ENV[@]}" >"$REG_DIR/s3.env"
    fi
    mapfile -t S3_ENV <"$REG_DIR/s3.env"
    berth_env+=("${S3_ENV[@]}")
  fi
  if [[ "${E2E_META:-sqlite}" == postgres ]]; then
    [[ "$E2E_TARGET" == berth ]] || { echo "E2E_META=postgres needs E2E_TARGET=berth"; return 1; }
    local url
    url=$(pg_database_url) || return 1
    berth_env+=("BERTH_DATABASE_URL=$url")
  fi
  case "$E2E_TARGET" in
    cluster)
      if [[ -n "${REG_TLS_CERT:-}${REG_HOST:-}" ]]; then
        echo "TLS and REG_HOST are the nodes' own business: not tested through the cluster's nginx"
        return 1
      fi
      cluster_start || return 1
      ;;
    berth)
      if [[ ! -x "$BERTH_BIN" ]]; then
        echo "berth binary not found at $BERTH_BIN (build it with: cargo build -p berth)"
        return 1
      fi
      # Exported in the subshell that becomes berth: no setting (or password) on a command line.
      (
        export BERTH_ADDR="$REG" BERTH_DATA_DIR="$REG_DIR/data"
        for kv in "${berth_env[@]}"; do export "${kv?}"; done
        exec "$BERTH_BIN" serve
      ) >>"$REG_DIR/registry.log" 2>&1 &
      ;;
    reference)
      cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: $REG
  secret: berth-e2e-fixed-secret
$tls_yaml
EOF
      if [[ -n "${REG_HTPASSWD:-}" ]]; then
        cat >>"$REG_DIR/config.yml" <<EOF
auth:
  htpasswd:
    realm: berth
    path: $REG_HTPASSWD
EOF
      fi
      # Distribution reads REGISTRY_* variables as configuration: podman's REGISTRY_AUTH_FILE
      # (setup_containers_env) would become an invalid `auth.file` setting.
      env -u REGISTRY_AUTH_FILE /usr/bin/docker-registry serve "$REG_DIR/config.yml" \
        >>"$REG_DIR/registry.log" 2>&1 &
      ;;
  esac
  REG_PID=$!
  REG_PIDS+=("$REG_PID")
  local i
  for i in $(seq 100); do
    if ! kill -0 "$REG_PID" 2>/dev/null; then
      echo "$E2E_TARGET registry exited at startup; log:"
      tail -n 20 "$REG_DIR/registry.log"
      return 1
    fi
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${REG_CURL_ARGS[@]+"${REG_CURL_ARGS[@]}"} \
      "$REG_URL/v2/")" == "$ready" ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "$E2E_TARGET registry did not answer $ready on $REG_URL/v2/ within 10 s; log:"
  tail -n 20 "$REG_DIR/registry.log"
  return 1
}

# start_registry_or_abort DIR [PORT]: start_registry, recording a failure and stopping the test file if it fails.
start_registry_or_abort() {
  if ! start_registry "$@" >"$T/start-registry.msg" 2>&1; then
    abort "start $E2E_TARGET registry" "$(cat "$T/start-registry.msg")"
  fi
}

# stop_registry [SIGNAL]: stop the registry started last (default SIGTERM) and wait for it.
stop_registry() {
  local sig=${1:-TERM}
  [[ -n "${REG_PID:-}" ]] || return 0
  if [[ "$E2E_TARGET" == cluster ]]; then
    cluster_stop "$sig"
  else
    kill "-$sig" "$REG_PID" 2>/dev/null
    wait "$REG_PID" 2>/dev/null
  fi
  REG_PID=""
}

# ---------------------------------------------------------------- private Docker Engine
# start_dockerd [ARGS...]: a dockerd of our own (vfs, no iptables, no bridge) on a socket in
# $T, with ARGS added. Exports DOCKER_HOST and DOCKER_CONFIG (no credentials land in ~/.docker).
start_dockerd() {
  local d="$T/docker"
  mkdir -p "$d/data" "$d/config"
  DOCKER_EXEC_ROOT="/tmp/dockerexec-$$"
  export DOCKER_CONFIG="$d/config"
  export DOCKER_HOST="unix://$d/docker.sock"
  /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    --data-root "$d/data" --exec-root "$DOCKER_EXEC_ROOT" --pidfile "$d/dockerd.pid" \
    -H "$DOCKER_HOST" "$@" >"$d/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local i
  for i in $(seq 300); do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "dockerd exited at startup; log:"; tail -n 20 "$d/dockerd.log"; return 1
    fi
    if docker version >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "dockerd did not answer within 30 s; log:"; tail -n 20 "$d/dockerd.log"
  return 1
}

stop_dockerd() {
  [[ -n "$DOCKERD_PID" ]] || return 0
  local i
  kill -TERM "$DOCKERD_PID" 2>/dev/null
  for i in $(seq 150); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$DOCKERD_PID" 2>/dev/null
  wait "$DOCKERD_PID" 2>/dev/null
  DOCKERD_PID=""
  umount "$DOCKER_EXEC_ROOT/netns/default" 2>/dev/null
  rm -rf "$DOCKER_EXEC_ROOT"
}

# ---------------------------------------------------------------- podman / buildah with private storage
setup_containers_env() {
  mkdir -p "$T/containers"
  cat >"$T/containers/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF="$T/containers/containers.conf"
  export REGISTRY_AUTH_FILE="$T/containers/auth.json"
  echo '{}' >"$REGISTRY_AUTH_FILE"
}

pm() {
  podman --root "$T/podman-root" --runroot "$T/podman-run" --tmpdir "$T/podman-tmp" \
    --storage-driver vfs "$@"
}

bh() {
  buildah --root "$T/buildah-root" --runroot "$T/buildah-run" --storage-driver vfs "$@"
}

# ---------------------------------------------------------------- test images (built once per run)
# $IMG/oci            OCI layout, tags:
#                       v1        busybox + /hello.txt, linux/amd64 (runs here)
#                       v1-arm64  same base layer + its own /hello.txt layer, linux/arm64 (never run)
#                       multi     OCI image index of v1 (amd64) and v1-arm64 (arm64)
# $IMG/busybox-amd64.tar   docker-archive of v1, named e2e-local/busybox:v1 (for docker load)
build_test_images() {
  [[ -f "$IMG/.done" ]] && return 0
  rm -rf "$IMG"
  mkdir -p "$IMG"
  (
    set -e
    cd "$IMG"
    umoci init --layout oci
    umoci new --image oci:v1
    umoci unpack --image oci:v1 bundle
    mkdir -p bundle/rootfs/bin
    cp /bin/busybox bundle/rootfs/bin/busybox
    ln -s busybox bundle/rootfs/bin/sh
    ln -s busybox bundle/rootfs/bin/cat
    echo "hello from amd64" >bundle/rootfs/hello.txt
    umoci repack --image oci:v1 bundle
    umoci config --image oci:v1 --config.cmd /bin/sh --config.cmd -c --config.cmd 'cat /hello.txt' \
      --os linux --architecture amd64
    # arm64: same base, config says arm64, plus a layer of its own so the two platforms differ.
    umoci config --image oci:v1 --tag v1-arm64 --architecture arm64
    rm -rf bundle
    umoci unpack --image oci:v1-arm64 bundle
    echo "hello from arm64" >bundle/rootfs/hello.txt
    umoci repack --image oci:v1-arm64 bundle
    rm -rf bundle
    umoci gc --layout oci
    add_index_to_layout oci multi v1 amd64 v1-arm64 arm64
    skopeo copy -q oci:oci:v1 docker-archive:busybox-amd64.tar:e2e-local/busybox:v1
  ) >"$E2E_WORK/build-images.log" 2>&1 || {
    echo "building test images failed; log:"; tail -n 20 "$E2E_WORK/build-images.log"; return 1
  }
  touch "$IMG/.done"
}

# add_index_to_layout LAYOUT NEWTAG TAG1 ARCH1 TAG2 ARCH2: write an OCI image index of two
# tagged manifests (with their platforms) into the layout's blobs and tag it NEWTAG.
add_index_to_layout() {
  local layout=$1 newtag=$2 tag1=$3 arch1=$4 tag2=$5 arch2=$6
  local index digest size
  index=$(jq -c --arg t1 "$tag1" --arg a1 "$arch1" --arg t2 "$tag2" --arg a2 "$arch2" '
    def pick($t; $a): .manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)
      | {mediaType, digest, size, platform: {architecture: $a, os: "linux"}};
    {schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
     manifests: [pick($t1; $a1), pick($t2; $a2)]}' "$layout/index.json")
  digest=$(printf '%s' "$index" | sha256sum | cut -d' ' -f1)
  size=$(printf '%s' "$index" | wc -c)
  printf '%s' "$index" >"$layout/blobs/sha256/$digest"
  jq --arg d "sha256:$digest" --argjson s "$size" --arg t "$newtag" '
    .manifests += [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
                    annotations: {"org.opencontainers.image.ref.name": $t}}]' \
    "$layout/index.json" >"$layout/index.json.new"
  mv "$layout/index.json.new" "$layout/index.json"
}

# manifest_digest_in_layout TAG: digest of a tag in $IMG/oci
layout_digest() {
  jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
    "$IMG/oci/index.json"
}

# ensure_test_images: build them (if run.sh has not) or abort this test file.
ensure_test_images() {
  local msg
  msg=$(build_test_images 2>&1) || abort "build test images" "$msg"
}

# ---------------------------------------------------------------- expectations shared by several t-*.sh
# expect_error PATTERN CMD...: CMD fails and its output matches PATTERN (extended regex)
expect_error() {
  local pattern=$1 out rc; shift
  out=$("$@" 2>&1); rc=$?
  echo "$out"
  if [[ $rc == 0 ]]; then echo "expected a failure, but the command succeeded"; return 1; fi
  grep -Eq -- "$pattern" <<<"$out" || { echo "the failure does not match: $pattern"; return 1; }
}

# expect_code CODE CURL-ARGS...: curl answers exactly CODE
expect_code() {
  local want=$1 got; shift
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@")
  [[ "$got" == "$want" ]] || { echo "expected HTTP $want, got $got"; return 1; }
}

# ---------------------------------------------------------------- token mode: secrets, credentials, the ORAS SDK
# Secrets live only in variables and files under $T: on stdin or in an environment variable of
# the one process that needs them, never on a command line.
rand_alnum() { head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
# Harbor's password policy: 8-128 characters with an upper-case letter, a lower-case letter and a digit.
new_password() { printf '%sAa1' "$(rand_alnum 21)"; }

# with_stdin SECRET CMD...: feed SECRET on stdin (never on the command line)
with_stdin() {
  local secret=$1; shift
  printf '%s\n' "$secret" | "$@"
}

# curl_as USER PASS CURL-ARGS...: curl with Basic credentials read from a config on stdin, not argv.
curl_as() {
  local user=$1 pass=$2; shift 2
  printf 'user = "%s:%s"\n' "$user" "$pass" | curl -K - -s --max-time 30 "$@"
}

header_of() {  # FILE NAME
  tr -d '\r' <"$1" | awk -v n="$(tr 'A-Z' 'a-z' <<<"$2")" \
    'index(tolower($0), n ":") == 1 {sub(/^[^:]*: */, ""); print}'
}

# jwt_payload TOKEN: the claims of a JWT (base64url of the middle part)
jwt_payload() {
  local p
  p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
  while (( ${#p} % 4 )); do p+='='; done
  base64 -d <<<"$p"
}

# Any client's way of saying "you need (other) credentials".
AUTH_ERROR="unauthorized|authentication required|no basic auth credentials|401|may require 'docker login'"

# expect_auth_failure CMD...: CMD fails, and its output says why in terms of authentication
expect_auth_failure() {
  local out rc
  out=$("$@" 2>&1); rc=$?
  echo "$out"
  if [[ $rc == 0 ]]; then echo "expected a failure, but the command succeeded"; return 1; fi
  grep -Eqi "$AUTH_ERROR" <<<"$out" || { echo "the failure does not mention authentication"; return 1; }
}

# expect_failure_saying TEXT CMD...: CMD fails and its output contains TEXT (extended regex)
expect_failure_saying() {
  local want=$1 out rc; shift
  out=$("$@" 2>&1); rc=$?
  echo "$out"
  if [[ $rc == 0 ]]; then echo "expected a failure, but the command succeeded"; return 1; fi
  grep -Eqi -- "$want" <<<"$out" || { echo "the output does not match: $want"; return 1; }
}

# expect_denied MESSAGE CMD...: CMD fails, and its output says "denied" and MESSAGE (berth's reason)
expect_denied() {
  local want=$1 out rc; shift
  out=$("$@" 2>&1); rc=$?
  echo "$out"
  if [[ $rc == 0 ]]; then echo "expected a failure, but the command succeeded"; return 1; fi
  grep -qi 'denied' <<<"$out" || { echo "the output does not say 'denied'"; return 1; }
  grep -qF -- "$want" <<<"$out" || { echo "the output does not say: $want"; return 1; }
}

expect_stored_login() {
  jq -e --arg r "$REG" '.auths[$r] | (.auth // "" | length > 0) or (.identitytoken // "" | length > 0)' \
    "$1" >/dev/null || { echo "no credentials for $REG in $1:"; cat "$1"; return 1; }
}
expect_no_stored_login() {
  ! jq -e --arg r "$REG" '.auths[$r] // empty | length > 0' "$1" >/dev/null 2>&1 ||
    { echo "credentials for $REG are still in $1"; return 1; }
}

# oras_sdk BACKEND USER ACTION TARGET ARG: the ORAS Python SDK on $REG with the password in the
# environment (ORAS_E2E_PASS), never ~/.docker: BACKEND is token or basic; $REALM and $SERVICE
# name the token service. HTTPS when $REALM is https:// (trust a private CA with
# REQUESTS_CA_BUNDLE, which requests reads), else plain HTTP.
#   push TARGET FILE (run in the file's directory) | pull TARGET OUTDIR
# With the token backend, oras-py (0.2.43) keeps the first token it got and answers a later
# 401 insufficient_scope with that same token (it re-asks only after a 403). A push starts with
# HEAD (scope pull), so its POST would carry a pull-only token: for a push the token is fetched
# up front with scope pull,push and handed over with set_token_auth, as the SDK documents.
oras_sdk() {
  python3 - "$REG" "$REALM" "$SERVICE" "$@" <<'PY'
import os, sys
import requests
import oras.client
reg, realm, service, backend, user, action, target, arg = sys.argv[1:9]
password = os.environ["ORAS_E2E_PASS"]
client = oras.client.OrasClient(hostname=reg, insecure=realm.startswith("http://"), auth_backend=backend)
client.auth.set_basic_auth(user, password)
if backend == "token" and action == "push":
    repo = target.split(":")[0]
    answer = requests.get(realm, params={"service": service, "scope": f"repository:{repo}:pull,push"},
                          auth=(user, password), timeout=30)
    answer.raise_for_status()
    client.auth.set_token_auth(answer.json()["token"])
if action == "push":
    resp = client.push(files=[arg], target=f"{reg}/{target}")
    print(resp.status_code, resp.headers.get("Docker-Content-Digest", ""))
    if resp.status_code != 201:
        sys.exit(1)
elif action == "pull":
    files = client.pull(target=f"{reg}/{target}", outdir=arg)
    print("\n".join(files))
    if not files:
        sys.exit(1)
PY
}
in_dir() { cd "$1" || return 1; shift; "$@"; }   # (check runs it in a subshell: the cd stays there)
oras_as() {  # PASS BACKEND USER ACTION TARGET ARG
  local pass=$1; shift
  ORAS_E2E_PASS=$pass oras_sdk "$@"
}

# ---------------------------------------------------------------- TLS: the host address, private CAs, certs.d
# docker counts 127.0.0.0/8 as an insecure registry: there it skips certificate verification
# and never reads certs.d, so nothing about TLS would be tested. A TLS test listens on this
# machine's first non-loopback IPv4 address instead (REG_HOST; the traffic stays inside the
# machine). host_ipv4 prints it, or nothing.
host_ipv4() {
  ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}'
}

# The pki_* helpers keep their files in $PKI; certificates are issued for $HOST_IP (set it first).
PKI="$T/pki"

# pki_ca NAME: a self-signed CA in $PKI/NAME.crt + NAME.key
pki_ca() {
  mkdir -p "$PKI" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=berth e2e $1" -keyout "$PKI/$1.key" -out "$PKI/$1.crt" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# pki_issue CA NAME serverAuth|clientAuth: $PKI/NAME.crt + NAME.key, signed by CA, for
# $HOST_IP, 127.0.0.1 and localhost
pki_issue() {
  local ca=$1 name=$2 usage=$3
  printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature \
    "extendedKeyUsage=$usage" "subjectAltName=IP:${HOST_IP:?},IP:127.0.0.1,DNS:localhost" \
    >"$PKI/$name.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" &&
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
      -CAcreateserial -days 2 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
}

# pki_swap NAME LIVE: replace $PKI/LIVE.crt/.key by copies of NAME.crt/.key, as a certificate
# manager does (write a new file, then rename it over the old one)
pki_swap() {
  local name=$1 live=$2
  cp "$PKI/$name.crt" "$PKI/$live.crt.new" && cp "$PKI/$name.key" "$PKI/$live.key.new" &&
    mv "$PKI/$live.crt.new" "$PKI/$live.crt" && mv "$PKI/$live.key.new" "$PKI/$live.key"
}

# cert_dir DIR CA [CLIENT]: DIR laid out as containers/image's --cert-dir and docker's certs.d
# read it: CA's certificate as ca.crt (*.crt are CAs), and CLIENT's certificate and key as
# client.cert + client.key (mutual TLS)
cert_dir() {
  local dir=$1 ca=$2 client=${3:-}
  mkdir -p "$dir" && cp "$PKI/$ca.crt" "$dir/ca.crt" || return 1
  if [[ -n "$client" ]]; then
    cp "$PKI/$client.crt" "$dir/client.cert" && cp "$PKI/$client.key" "$dir/client.key"
  fi
}

# docker_certs_dir REGISTRY CERT-DIR: copy CERT-DIR to /etc/docker/certs.d/REGISTRY, where
# dockerd looks (it has no flag or variable to look elsewhere; it re-reads the directory for
# every pull or push, no restart needed); removed on exit. Call it again to replace the files.
# Aborts the test file if the directory was there before this process made it.
docker_certs_dir() {
  local dir="/etc/docker/certs.d/$1" top="" d path mine=0
  for path in "${REMOVE_ON_EXIT[@]}"; do
    [[ "$dir" == "$path" || "$dir" == "$path"/* ]] && mine=1
  done
  if [[ $mine == 0 ]]; then
    d=$dir
    while [[ ! -e "$d" ]]; do top=$d; d=$(dirname "$d"); done
    [[ -n "$top" ]] || abort "install the CA for docker" "$dir exists already: not touching it"
    REMOVE_ON_EXIT+=("$top")
  fi
  rm -rf "$dir" && mkdir -p "$dir" && cp "$2"/* "$dir/"
}

# expect_refused CURL-ARGS...: the TLS handshake fails, so there is no HTTP answer at all
expect_refused() {
  local code rc
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 30 "$@" 2>"$T/refused.err"); rc=$?
  echo "curl exit $rc, HTTP code $code: $(cat "$T/refused.err")"
  [[ $rc != 0 && "$code" == 000 ]]
}

fingerprint_of_file() { openssl x509 -in "$1" -noout -fingerprint -sha256; }
# served_fingerprint: the certificate $REG presents (openssl s_client)
served_fingerprint() {
  openssl s_client -connect "$REG" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256
}

# expect_served FILE [SECONDS]: $REG presents FILE's certificate (within SECONDS)
expect_served() {
  local want got i
  want=$(fingerprint_of_file "$1") || return 1
  for i in $(seq "$(( ${2:-0} * 2 + 1 ))"); do
    got=$(served_fingerprint)
    [[ "$got" == "$want" ]] && { echo "served: $got"; return 0; }
    sleep 0.5
  done
  echo "expected $want"; echo "served   $got"
  return 1
}

# ---------------------------------------------------------------- small HTTP helpers
# http_code METHOD URL [curl args...]: print only the status code.
http_code() {
  local method=$1 url=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X "$method" "$url" "$@"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
