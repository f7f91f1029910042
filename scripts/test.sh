#!/usr/bin/env bash
# Runs berth's whole test suite on a Debian machine: installs what the tests need, then
# formatting, lints, unit and in-process API tests, and end-to-end tests with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (idempotent)"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "unit, storage/metadata suites and in-process API tests"
cargo nextest run --workspace --no-fail-fast

step "end-to-end tests against the real binary with real clients"
cargo build -p berth --quiet
BERTH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/berth" tests/e2e/run.sh

step "end-to-end tests against two nodes on PostgreSQL + S3 behind nginx (the client suites)"
BERTH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/berth" E2E_TARGET=cluster tests/e2e/run.sh
