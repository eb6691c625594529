#!/usr/bin/env bash
# Runs Triad's whole test suite: installs what cargo does not, checks formatting and lints, builds
# once (binaries and tests), then runs every test. The end-to-end tests start real controllers and
# agents from the binaries built here. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

echo "== format"
cargo fmt --all -- --check
echo "== build (target dir: $CARGO_TARGET_DIR)"
cargo build --workspace --locked --bins --tests --benches
echo "== lint"
cargo clippy --workspace --locked --all-targets -- -D warnings
echo "== test"
# Two at a time: each end-to-end test runs three controllers and three agents on this machine.
cargo test --workspace --locked -- --test-threads=2
