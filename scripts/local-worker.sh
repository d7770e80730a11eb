# Sourced: defines start_local_worker, which starts the example worker in local workerd (wrangler
# dev) on a free loopback port; every worker started is stopped, by its own process group, when
# the calling script exits.
#
#   start_local_worker PERSIST_DIR [wrangler dev arguments...]
#
# Sets WORKER_PORT and WORKER_PID. Needs DURAFETCH_AUTH; passes DURAFETCH_RESTORE_AUTH to the
# worker too when it is set.

LOCAL_WORKER_PIDS=()
# wrangler ends on SIGINT with status 130: the wait must not become the script's exit status
# (under `set -e`, a failing last command of an `&&` list ends the script with its status).
stop_local_workers() {
  local pid
  for pid in "${LOCAL_WORKER_PIDS[@]}"; do
    kill -INT -- "-$pid" 2>/dev/null || continue
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_local_workers EXIT

start_local_worker() {
  local persist="$1"
  shift
  local secrets=(--var "DURAFETCH_AUTH:$DURAFETCH_AUTH")
  if [ -n "${DURAFETCH_RESTORE_AUTH:-}" ]; then
    secrets+=(--var "DURAFETCH_RESTORE_AUTH:$DURAFETCH_RESTORE_AUTH")
  fi
  WORKER_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  local log="$persist/wrangler.log"
  mkdir -p "$persist"
  (cd "$DURAFETCH_ROOT" && exec setsid wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --persist-to "$persist/state" \
    --inspector-port 0 "${secrets[@]}" "$@" --log-level warn >"$log" 2>&1 </dev/null) &
  WORKER_PID=$!
  LOCAL_WORKER_PIDS+=("$WORKER_PID")
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "http://127.0.0.1:$WORKER_PORT/"; then return 0; fi
    if ! kill -0 "$WORKER_PID" 2>/dev/null; then echo "wrangler dev exited; its log:" >&2; cat "$log" >&2; exit 1; fi
    sleep 0.25
  done
  echo "wrangler dev did not answer within 30 s; its log:" >&2
  cat "$log" >&2
  exit 1
}
