#!/usr/bin/env bash
# The benchmark (not part of the tests): release builds of the example and the puller, run in
# local workerd; prints a markdown table of ratios measured in one run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$DURAFETCH_ROOT/scripts/bootstrap.sh"
bash "$DURAFETCH_ROOT/scripts/build-example.sh" >/dev/null 2>&1 || bash "$DURAFETCH_ROOT/scripts/build-example.sh"
cd "$DURAFETCH_ROOT"
cargo build --quiet --release -p durafetch-pull
cargo build --quiet --release -p durafetch-e2e --bin bench
DURAFETCH_PULL_BIN="$DURAFETCH_ROOT/target/release/durafetch-pull" "$DURAFETCH_ROOT/target/release/bench"
