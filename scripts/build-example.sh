#!/usr/bin/env bash
# Builds the example worker to wasm with the cached tools (no downloads at build time).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DURAFETCH_ROOT/examples/counter"
worker-build --release --no-opt "$@"
