#!/usr/bin/env bash
# Runs every test: unit tests of the pure core and the puller, the compile-fail tests of
# #[durafetch], and the end-to-end tests against the example worker in local workerd; first,
# the format and lint checks, which take seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$DURAFETCH_ROOT/scripts/bootstrap.sh"
bash "$DURAFETCH_ROOT/scripts/build-example.sh" >/dev/null 2>&1 || bash "$DURAFETCH_ROOT/scripts/build-example.sh"
cd "$DURAFETCH_ROOT"
cargo fmt --all --check
cargo clippy --quiet --workspace --exclude durafetch-example --all-targets -- -D warnings
(cd examples/counter && cargo clippy --quiet --target wasm32-unknown-unknown -- -D warnings)
# The crates as users get them: their docs build without a warning, they package (each built
# from its own packaged sources), and the example's wrangler.toml deploys (as far as a dry run).
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps -p durafetch-sdk -p durafetch-macros -p durafetch-pull
# Cargo verifies the puller against the sdk just packaged through a local registry, and takes
# what it has for that registry and version as final: the sources it unpacked and the build it
# made, both keyed by the target directory's path. A target directory used by an earlier
# commit would verify against that commit's sdk, so both go first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/durafetch-{macros,sdk,pull}-*
cargo clean --quiet -p durafetch-macros -p durafetch-sdk -p durafetch-pull
cargo package --quiet --allow-dirty -p durafetch-macros -p durafetch-sdk -p durafetch-pull
dry_run="$(mktemp -d)"
wrangler deploy --dry-run --outdir "$dry_run" >"$dry_run/log" 2>&1 || { cat "$dry_run/log"; exit 1; }
rm -rf "$dry_run"
cargo build --quiet -p durafetch-pull
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The suite takes about 6 minutes on 2 cores; a run past 45 is a hang, and failing then leaves
# its output (cargo names tests running for over 60 s) instead of a run that never ends.
# --no-fail-fast: a failing test binary does not hide the results of the ones after it.
timeout --kill-after=30s 45m cargo test --no-fail-fast --workspace --exclude durafetch-example "$@" 2>&1 | tee "$log"
# One closing line over every test binary, rather than the last binary's own count.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
