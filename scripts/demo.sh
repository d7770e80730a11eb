#!/usr/bin/env bash
# The demo: builds the example worker, runs it in local workerd, writes sample data into several
# objects of both classes, pulls it into a SQLite file with durafetch-pull and prints what it got;
# then restores one object into a second local worker and compares the two.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$DURAFETCH_ROOT/scripts/bootstrap.sh"
bash "$DURAFETCH_ROOT/scripts/build-example.sh" >/dev/null 2>&1 || bash "$DURAFETCH_ROOT/scripts/build-example.sh"
cargo build --quiet -p durafetch-pull --manifest-path "$DURAFETCH_ROOT/Cargo.toml"

OUT="$DURAFETCH_ROOT/demo-out"
rm -rf "$OUT" && mkdir -p "$OUT"
# A throwaway token for this local run; production tokens come from `wrangler secret put`.
DURAFETCH_AUTH="demo-$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DURAFETCH_AUTH
source "$DURAFETCH_ROOT/scripts/local-worker.sh"
start_local_worker "$OUT/workerd"
echo "demo: example worker running in local workerd on 127.0.0.1:$WORKER_PORT"

base="http://127.0.0.1:$WORKER_PORT"
post() { curl -sf -X POST "$base/$1" --data-binary "$2" >/dev/null; }
for class in kv sql; do
  for user in alice bob carol; do
    post "$class/$user/put?key=name" "\"$user\""
    post "$class/$user/put_multiple_raw" '{"visits": 3, "tags": ["a", "b"], "score": 1.5, "profile": {"plan": "free", "langs": ["en"]}}'
    post "$class/$user/put_raw?key=avatar" "bytes-of-$user"
  done
  post "$class/bob/delete?key=score" ""
done
# SQL tables in the SQLite-backed objects, one schema in each: a plain rowid table, a table with
# a composite key and no rowid, and a table with no declared key.
schema="CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, price REAL);
  CREATE TABLE IF NOT EXISTS order_lines (order_id INTEGER, line INTEGER, note TEXT, PRIMARY KEY (order_id, line)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS events (what TEXT)"
sql() { post "sql/$1/ops" "$(python3 -c 'import json, sys; print(json.dumps([{"op": "sql", "sql": sys.argv[1]}]))' "$2")"; }
for user in alice bob carol; do
  sql "$user" "$schema"
done
sql alice "INSERT INTO orders (item, price) VALUES ('tea', 3.5), ('cake', 4.0);
  INSERT INTO order_lines VALUES (1, 1, 'green'), (1, 2, 'no sugar'); INSERT INTO events VALUES ('opened')"
sql bob "INSERT INTO orders (item, price) VALUES ('coffee', 2.5); INSERT INTO events VALUES ('opened'), ('paid')"
sleep 1 # objects report to the registry right after their writes are durable

DB="$OUT/durafetch.sqlite"
"$DURAFETCH_ROOT/target/debug/durafetch-pull" --db "$DB" --server "ws://durafetch_durafetch-example.localhost:$WORKER_PORT"
python3 - "$DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
objects = db.execute("select count(*) from durable_objects").fetchone()[0]
keys = db.execute("select count(*) from kv").fetchone()[0]
print(f"demo: {objects} objects, {keys} keys in {sys.argv[1]}")
for cls, name, n in db.execute("select o.class_name, o.name, count(kv.key) from durable_objects o left join kv using (do_id) group by o.do_id order by o.class_name, o.name"):
    print(f"  {cls:<10} {name:<6} {n} keys")
for name, key, val, kind in db.execute("select name, key, val, val_type from kv where class_name = 'CounterSql' and name = 'alice' order by key"):
    print(f"  CounterSql alice {key} = {val if kind == 'json' else '<' + kind + '>'}")
tables = [t for (t,) in db.execute("select local_table from sql_tables order by 1")]
print(f"demo: SQL tables {', '.join(tables)}; one query across objects:")
print('  select o.name, count(*), sum(r.price) from "CounterSql.orders" r join durable_objects o using (do_id) group by o.name')
for name, n, total in db.execute('select o.name, count(*), sum(r.price) from "CounterSql.orders" r join durable_objects o using (do_id) group by o.name order by o.name'):
    print(f"  {name:<6} {n} orders, {total:.2f}")
PY

# A restore: alice, from the file into a second worker (another name, its own storage), which
# allows restores (DURAFETCH_RESTORE_AUTH); then that worker pulled into a second file.
DURAFETCH_RESTORE_AUTH="demo-restore-$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DURAFETCH_RESTORE_AUTH
# The example's wrangler.toml under another name, its `main` made absolute.
sed -e 's/"durafetch-example"/"durafetch-staging"/' -e "s|^main = \"|main = \"$DURAFETCH_ROOT/|" \
  "$DURAFETCH_ROOT/wrangler.toml" >"$OUT/staging.toml"
start_local_worker "$OUT/workerd-staging" --config "$OUT/staging.toml"
echo "demo: a second worker, durafetch-staging, on 127.0.0.1:$WORKER_PORT; restoring alice into it"
STAGING="ws://durafetch_durafetch-staging.localhost:$WORKER_PORT"
"$DURAFETCH_ROOT/target/debug/durafetch-pull" restore --db "$DB" --to "$STAGING" --name alice
COPY="$OUT/staging.sqlite"
"$DURAFETCH_ROOT/target/debug/durafetch-pull" --quiet --db "$COPY" --server "$STAGING"
python3 - "$DB" "$COPY" <<'PY'
import sqlite3, sys
def contents(path):
    db = sqlite3.connect(path)
    rows = set(db.execute("select 'kv', class_name, key, val_type, quote(val), hex(val_blob) from kv where name = 'alice'"))
    for cls, table, local in db.execute("select class_name, table_name, local_table from sql_tables"):
        for row in db.execute(f'select * from "{local}" t join durable_objects o using (do_id) where o.name = \'alice\''):
            cols = [d[0] for d in db.execute(f'select * from "{local}" limit 0').description]
            rows.add((cls, table) + tuple(repr(v) for c, v in zip(cols, row) if c not in ("do_id", "_pull_gen")))
    return rows
a, b = contents(sys.argv[1]), contents(sys.argv[2])
print(f"demo: alice in the backup: {len(a)} keys and rows; in durafetch-staging after the restore: {len(b)}; identical: {a == b}")
sys.exit(0 if a == b and a else 1)
PY
