#!/usr/bin/env bash
# Starts the Triad demo: installs what cargo does not, builds the binaries, and runs
# `triadctl demo` in the foreground (Ctrl-C stops everything). Extra arguments go to the demo,
# e.g. `scripts/demo.sh --dir /tmp/triad`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

cargo build --workspace --locked --bins
args=("$@")
case " $* " in
    *" --dir "*|*" --dir="*) ;;
    *) args+=(--dir triad-demo) ;;
esac
exec "$CARGO_TARGET_DIR/debug/triadctl" demo "${args[@]}"
