# Sourced: starts the example worker in local workerd (wrangler dev) on a free loopback port and
# stops it, by its own process group, when the calling script exits.
# Sets: WORKER_PORT, WORKER_PID. Needs: DURAFETCH_AUTH, PERSIST_DIR.

WORKER_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
WORKER_LOG="$PERSIST_DIR/wrangler.log"
mkdir -p "$PERSIST_DIR"
(cd "$DURAFETCH_ROOT" && exec setsid wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --persist-to "$PERSIST_DIR/state" \
  --var "DURAFETCH_AUTH:$DURAFETCH_AUTH" --log-level warn >"$WORKER_LOG" 2>&1 </dev/null) &
WORKER_PID=$!
# wrangler ends on SIGINT with status 130: the wait must not become the script's exit status
# (under `set -e`, a failing last command of an `&&` list ends the script with its status).
stop_worker() {
  kill -INT -- "-$WORKER_PID" 2>/dev/null || return 0
  wait "$WORKER_PID" 2>/dev/null || true
}
trap stop_worker EXIT

for _ in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$WORKER_PORT/"; then break; fi
  if ! kill -0 "$WORKER_PID" 2>/dev/null; then echo "wrangler dev exited; its log:" >&2; cat "$WORKER_LOG" >&2; exit 1; fi
  sleep 0.25
done
