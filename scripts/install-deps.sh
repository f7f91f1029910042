#!/usr/bin/env bash
# Installs (idempotently) everything berth's tests need on a fresh Debian 12 machine: real registry clients, the reference registry, ORAS, cargo-nextest, two S3-compatible servers (moto, s3s-fs).
set -euo pipefail

# Debian packages the tests use:
#   docker.io podman skopeo buildah umoci runc uidmap   real clients and their runtimes
#   docker-registry                                     the reference registry (distribution 2.8)
#   busybox-static                                      the only binary inside the test images
#   apache2-utils (htpasswd) jq curl                    auth files, JSON, raw HTTP
#   openssl iproute2 (ip)                               private CAs and the host's address (t-tls.sh)
#   wrk hyperfine                                       load / timing tools
#   nginx                                               round-robin in front of two nodes (e2e cluster);
#                                                       `nginx -t` of deploy/ (crates/berth-deploy-tests)
#   docker-compose                                      `docker-compose config` of deploy/compose
#   postgresql                                          the PostgreSQL backend's tests (initdb, pg_ctl)
PACKAGES=(docker.io podman skopeo buildah umoci docker-registry busybox-static apache2-utils jq curl
          uidmap runc wrk hyperfine openssl iproute2 nginx docker-compose postgresql)

if [[ "$(id -u)" != 0 ]]; then
  echo "install-deps.sh: must run as root (apt-get install)" >&2
  exit 1
fi

log() { echo "install-deps: $*"; }

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# pip for python3, needed only to install the ORAS SDK below
if ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "Debian packages: all present"
fi

# ORAS Python SDK (there is no ORAS CLI package in Debian 12)
if ! python3 -c 'import oras' >/dev/null 2>&1; then
  log "pip install oras"
  if ! python3 -m pip install -q oras 2>/tmp/install-deps-pip.err; then
    if grep -q externally-managed /tmp/install-deps-pip.err; then
      # Debian's system python refuses plain pip installs (PEP 668)
      python3 -m pip install -q --break-system-packages oras
    else
      cat /tmp/install-deps-pip.err >&2
      exit 1
    fi
  fi
  python3 -c 'import oras'
else
  log "python oras: present"
fi

# moto_server: an S3-compatible server for the S3 storage suite (crates/berth-storage)
pip_install() {
  if ! python3 -m pip install -q "$@" 2>/tmp/install-deps-pip.err; then
    if grep -q externally-managed /tmp/install-deps-pip.err; then
      python3 -m pip install -q --break-system-packages "$@"
    else
      cat /tmp/install-deps-pip.err >&2
      exit 1
    fi
  fi
}
if ! command -v moto_server >/dev/null 2>&1; then
  log "pip install moto[server]"
  pip_install 'moto[server]'
else
  log "moto_server: present"
fi

# prometheus_client: its text-format parser reads berth's /metrics in the e2e tests (t-ops.sh)
if ! python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
  log "pip install prometheus-client"
  pip_install prometheus-client
else
  log "python prometheus_client: present"
fi

# cargo-nextest
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps.sh: cargo not found: install the Rust toolchain first" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked --quiet
else
  log "cargo-nextest: present"
fi

# s3s-fs: the second S3-compatible server for the S3 storage suite. 0.14.1 is the last
# release that builds with this toolchain; ~2.5 minutes to build.
if ! command -v s3s-fs >/dev/null 2>&1; then
  log "cargo install s3s-fs@0.14.1 --features binary --locked"
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
else
  log "s3s-fs: present"
fi

# Fail loudly if anything the tests call is still not there.
for tool in docker dockerd podman skopeo buildah umoci runc docker-registry busybox htpasswd jq curl wrk hyperfine openssl ip moto_server s3s-fs; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-deps.sh: '$tool' still missing after install" >&2; exit 1; }
done
# The PostgreSQL tests start their own cluster from Debian's binaries (not on PATH).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "install-deps.sh: PostgreSQL's initdb missing after install" >&2; exit 1; }
log "done"
