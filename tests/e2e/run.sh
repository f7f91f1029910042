#!/usr/bin/env bash
# Runs berth's end-to-end tests (every tests/e2e/t-*.sh) with real clients and ends with one line "e2e: N passed, M failed".
#
#   tests/e2e/run.sh                         # against target/debug/berth
#   E2E_TARGET=reference tests/e2e/run.sh    # against /usr/bin/docker-registry (distribution 2.8)
#   E2E_ONLY=skopeo tests/e2e/run.sh         # only t-*skopeo*.sh
#   E2E_TARGET=cluster tests/e2e/run.sh      # two berth nodes on PostgreSQL + S3 behind nginx
#                                            # (the client suites; see CLUSTER_TESTS)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
E2E_GROUP=setup

echo "# e2e target: $E2E_TARGET$([[ $E2E_TARGET == berth ]] && echo " ($BERTH_BIN)"), temp dir $E2E_WORK"

# Every tool any test needs; a missing one is a failure, never a skip.
require_tools curl jq python3 sha256sum umoci skopeo podman buildah dockerd docker busybox runc openssl ip
if [[ "$E2E_TARGET" == reference ]]; then require_tools docker-registry; fi
# What the cluster runs: every client's suite and the token flow. TLS, listening addresses,
# restarts of one process and the import are a single node's business.
# Replication runs there as two single berths on the cluster's PostgreSQL and S3.
CLUSTER_TESTS=" auth buildah cluster curl-resume docker harbor-api oras podman replication skopeo token "
if [[ "$E2E_TARGET" == cluster || "${E2E_META:-}" == postgres ]]; then
  require_tools nginx psql moto_server runuser
  cluster_deps_start >"$E2E_WORK/cluster-deps.msg" 2>&1 ||
    fail "start PostgreSQL and moto_server for the cluster" "$(cat "$E2E_WORK/cluster-deps.msg")"
fi
if ! python3 -c 'import oras' 2>/dev/null; then
  fail "required python module 'oras' is missing (run scripts/install-deps.sh)"
fi
if [[ "$E2E_TARGET" != reference && ! -x "$BERTH_BIN" ]]; then
  fail "berth binary $BERTH_BIN is missing (cargo build -p berth)"
fi

# Build the test images once; every t-*.sh reuses them through $E2E_WORK.
msg=$(build_test_images 2>&1) || fail "build test images" "$msg"

for t in "$E2E_DIR"/t-*.sh; do
  [[ -n "${E2E_ONLY:-}" && "$(basename "$t")" != *"$E2E_ONLY"* ]] && continue
  name=$(basename "$t" .sh)
  [[ "$E2E_TARGET" == cluster && "$CLUSTER_TESTS" != *" ${name#t-} "* ]] && continue
  echo "# $(basename "$t")"
  bash "$t"
  rc=$?
  if [[ $rc != 0 && $rc != "$E2E_ABORTED" ]]; then
    fail "$(basename "$t") exited with status $rc"
  fi
done
if [[ "$E2E_TARGET" == cluster ]]; then
  E2E_GROUP=cluster
  check "both nodes served requests, and uploads continued on the other node" cluster_served_split
fi
# The EXIT trap in lib.sh prints the summary line and sets the exit status.
