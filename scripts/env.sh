# Sourced by the other scripts: where the cached tools live and the environment a build needs.
# The cache sits outside the clone so that fresh clones on the same machine reuse it.
DURAFETCH_TOOLS="${DURAFETCH_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/durafetch-tools}"
DURAFETCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKER_BUILD_VERSION=0.8.7
# Must equal the wasm-bindgen crate version pinned in Cargo.lock.
WASM_BINDGEN_VERSION=0.2.130
NPM_DIR="$DURAFETCH_TOOLS/npm"

export DURAFETCH_TOOLS DURAFETCH_ROOT
export PATH="$DURAFETCH_TOOLS/bin:$NPM_DIR/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$DURAFETCH_TOOLS/bin/wasm-bindgen"
export ESBUILD_BIN="$NPM_DIR/node_modules/.bin/esbuild"
# Keep wrangler and miniflare off the internet and out of $HOME.
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false
export XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$DURAFETCH_TOOLS/config}"
