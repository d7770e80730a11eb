#!/usr/bin/env bash
# Installs everything the build and the tests need, from the package registries only, into a cache
# outside the clone. Idempotent: a second run only checks versions.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$DURAFETCH_TOOLS/bin" "$NPM_DIR"

say() { echo "bootstrap: $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

installed_version() { "$1" --version 2>/dev/null | awk '{print $NF}' || true; }

if [ "$(installed_version "$DURAFETCH_TOOLS/bin/worker-build")" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install --quiet worker-build --version "$WORKER_BUILD_VERSION" --root "$DURAFETCH_TOOLS" --force
fi

if [ "$(installed_version "$DURAFETCH_TOOLS/bin/wasm-bindgen")" != "$WASM_BINDGEN_VERSION" ]; then
  # Not --locked: the CLI's own lockfile pins a yanked crate.
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install --quiet wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$DURAFETCH_TOOLS" --force
fi

# Node 22 and wrangler, pinned by the repo's package.json and lockfile; reinstalled when they change.
lock_sum="$(cat "$DURAFETCH_ROOT/package.json" "$DURAFETCH_ROOT/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$NPM_DIR/.lock-sum" 2>/dev/null || true)" != "$lock_sum" ]; then
  say "installing Node 22 and wrangler from package-lock.json"
  cp "$DURAFETCH_ROOT/package.json" "$DURAFETCH_ROOT/package-lock.json" "$NPM_DIR/"
  # `npm ci` rejects a lockfile that omits other platforms' optional workerd builds; install honours the pinned versions.
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$NPM_DIR/.lock-sum"
fi

# The PostgreSQL sink's tests start a server of their own from the machine's packages.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing the PostgreSQL server from the machine's packages"
  sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq postgresql >/dev/null
fi

node_major="$(node --version | sed 's/^v\([0-9]*\).*/\1/')"
[ "$node_major" -ge 22 ] || { say "expected Node >= 22 first on PATH, got $(node --version)"; exit 1; }
say "tools ready in the cache ($(wrangler --version 2>/dev/null | tail -1), node $(node --version))"
