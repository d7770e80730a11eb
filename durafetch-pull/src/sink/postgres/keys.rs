//! A page of keys into `kv`: a few statements over arrays (`unnest`), or for an object's first
//! download, the rows by binary `COPY`.

use durafetch_sdk::core::protocol::Change;
use postgres::types::Type;
use postgres::Transaction;

use crate::sink::interface::ApplyStats;
use crate::sink::plan::{last_per_key, now_ms, ObjectWrite, ValueColumns};
use crate::sink::postgres::copy::{copy_rows, JsonbText};

/// A statement's parameter.
type Param<'a> = dyn postgres::types::ToSql + Sync + 'a;
/// A row of `kv` that differs from the page's row `u` (or is missing).
const DIFFERS: &str = "NOT EXISTS (SELECT 1 FROM kv WHERE kv.do_id = $1 AND kv.key = u.key
    AND kv.val IS NOT DISTINCT FROM u.val::jsonb AND kv.val_type = u.kind
    AND kv.val_blob IS NOT DISTINCT FROM u.blob AND kv.val_error IS NOT DISTINCT FROM u.error)";

/// The page's rows, as arrays from parameter `$first` on: keys, JSON texts, kinds, bytes, errors.
fn page_rows(first: usize) -> String {
    let [k, v, t, b, e] = [first, first + 1, first + 2, first + 3, first + 4];
    format!("unnest(${k}::text[], ${v}::text[], ${t}::text[], ${b}::bytea[], ${e}::text[]) AS u(key, val, kind, blob, error)")
}
/// The columns a fresh snapshot's keys are copied into, and their types.
const KV_COPY: &str = "kv (do_id, worker_name, class_name, name, key, val, val_type, val_blob, val_error,
    read_at_log_id, read_at_write_id, pull_gen, insert_ts, update_ts)";
const KV_COPY_TYPES: [Type; 14] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
];

pub(crate) fn apply_changes(
    tx: &mut Transaction<'_>,
    write: &ObjectWrite,
    stamp: i64,
    changes: &[Change],
) -> Result<ApplyStats, postgres::Error> {
    // A statement touches a row once: each key's last change stands for its others.
    let changes = last_per_key(changes, |c| c.key.as_str());
    let now = now_ms();
    let read_at = (i64::from(write.read_at.epoch), write.read_at.seq as i64);
    let mut stats = ApplyStats::default();

    let deleted: Vec<&str> = changes.iter().filter(|c| ValueColumns::of(&c.value).is_none()).map(|c| c.key.as_str()).collect();
    if !deleted.is_empty() {
        stats.deleted = if write.history {
            tx.execute(
                "WITH gone AS (DELETE FROM kv WHERE do_id = $1 AND key = ANY($2) RETURNING key)
                 INSERT INTO kv_history (do_id, worker_name, class_name, name, key, deleted, read_at_log_id, read_at_write_id, pulled_at)
                 SELECT $1, $3, $4, $5, key, true, $6, $7, $8 FROM gone",
                &[&write.do_id, &deleted, &write.worker, &write.class, &write.name, &read_at.0, &read_at.1, &now],
            )?
        } else {
            tx.execute("DELETE FROM kv WHERE do_id = $1 AND key = ANY($2)", &[&write.do_id, &deleted])?
        };
    }

    let written: Vec<(&str, ValueColumns<'_>)> =
        changes.iter().filter_map(|c| ValueColumns::of(&c.value).map(|v| (c.key.as_str(), v))).collect();
    if written.is_empty() {
        return Ok(stats);
    }
    if write.fresh && !write.history && !write.compare {
        let copied = copy_rows(tx, KV_COPY, &KV_COPY_TYPES, |writer| {
            for (key, v) in &written {
                let val = v.val.as_deref().map(JsonbText);
                writer.write(&[
                    &write.do_id,
                    &write.worker,
                    &write.class,
                    &write.name,
                    key,
                    &val,
                    &v.kind,
                    &v.blob,
                    &v.error,
                    &read_at.0,
                    &read_at.1,
                    &stamp,
                    &now,
                    &now,
                ])?;
            }
            Ok(())
        })?;
        if let Some(copied) = copied {
            stats.written = copied;
            return Ok(stats);
        }
    }
    let keys: Vec<&str> = written.iter().map(|(k, _)| *k).collect();
    let vals: Vec<Option<&str>> = written.iter().map(|(_, v)| v.val.as_deref()).collect();
    let kinds: Vec<&str> = written.iter().map(|(_, v)| v.kind).collect();
    let blobs: Vec<Option<&[u8]>> = written.iter().map(|(_, v)| v.blob).collect();
    let errors: Vec<Option<&str>> = written.iter().map(|(_, v)| v.error).collect();
    let page: [&Param<'_>; 5] = [&keys, &vals, &kinds, &blobs, &errors];
    fn with_page<'a>(shared: &[&'a Param<'a>], page: &[&'a Param<'a>]) -> Vec<&'a Param<'a>> {
        shared.iter().chain(page).copied().collect()
    }
    if write.compare {
        let sql = format!("SELECT count(*) FROM {} WHERE {DIFFERS}", page_rows(2));
        let differed: i64 = tx.query_one(&sql, &with_page(&[&write.do_id], &page))?.get(0);
        stats.differed = differed as u64;
    }
    if write.history {
        // Only real changes: a snapshot re-sends unchanged keys.
        let sql = format!(
            "INSERT INTO kv_history (do_id, worker_name, class_name, name, key, deleted, val, val_type, val_blob, val_error,
                                     read_at_log_id, read_at_write_id, pulled_at)
             SELECT $1, $2, $3, $4, u.key, false, u.val::jsonb, u.kind, u.blob, u.error, $5, $6, $7 FROM {} WHERE {DIFFERS}",
            page_rows(8)
        );
        tx.execute(&sql, &with_page(&[&write.do_id, &write.worker, &write.class, &write.name, &read_at.0, &read_at.1, &now], &page))?;
    }
    let sql = format!(
        "INSERT INTO kv (do_id, worker_name, class_name, name, key, val, val_type, val_blob, val_error,
                         read_at_log_id, read_at_write_id, pull_gen, insert_ts, update_ts)
         SELECT $1, $2, $3, $4, u.key, u.val::jsonb, u.kind, u.blob, u.error, $5, $6, $7, $8, $8 FROM {}
         ON CONFLICT (do_id, key) DO UPDATE SET
            val = excluded.val, val_type = excluded.val_type, val_blob = excluded.val_blob,
            val_error = excluded.val_error, read_at_log_id = excluded.read_at_log_id,
            read_at_write_id = excluded.read_at_write_id, pull_gen = excluded.pull_gen,
            update_ts = excluded.update_ts",
        page_rows(9)
    );
    stats.written = tx.execute(
        &sql,
        &with_page(&[&write.do_id, &write.worker, &write.class, &write.name, &read_at.0, &read_at.1, &stamp, &now], &page),
    )?;
    Ok(stats)
}
