//! The PostgreSQL sink: the SQLite file's tables with PostgreSQL's types (`jsonb` values,
//! `bytea` bytes, `bigint` positions), written by one or several pullers at once.
//!
//! Each page is one transaction of a few statements over arrays (`unnest`), so a page costs a
//! handful of round trips whatever its size. Write stamps come from a sequence, which several
//! pullers draw from without waiting on each other. Pullers that split the work (`--shard`)
//! each record and write only their own part's objects, so no two of them ever write one row;
//! each keeps its own place in the registry index (`durafetch_servers.part`).
//!
//! SQL tables are mirrored as in the file, a table per (class, table): `sql_tables`, their columns typed by `columns`.

pub(crate) mod columns;
pub(crate) mod copy;
pub mod database;
pub(crate) mod keys;
pub(crate) mod sql_tables;
pub(crate) mod tls;

use std::collections::HashMap;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, IndexEntry, SqlPage};

use crate::sink::interface::{ApplyStats, PullTarget, Sink, SinkError, Swept, WriteId};
use crate::sink::plan::{now_ms, ObjectWrite, Reading, INDEX_HEAD_NEWER};
use crate::sink::postgres::database::PostgresSink;
use crate::sink::postgres::keys::apply_changes;

impl Sink for PostgresSink {
    fn index_rev(&mut self, server_url: &str, shard: u32) -> Result<u64, SinkError> {
        let part = self.part.to_string();
        let row = self.client.query_opt(
            "SELECT index_rev FROM durafetch_servers WHERE server_url = $1 AND shard = $2 AND part = $3",
            &[&server_url, &(shard as i32), &part],
        )?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    fn record_index_page(&mut self, server_url: &str, worker: &str, entries: &[IndexEntry]) -> Result<(), SinkError> {
        // Only this part's objects: another part's rows are its own puller's to write.
        let mut mine: HashMap<&str, &IndexEntry> = HashMap::new();
        for entry in entries.iter().filter(|e| self.part.owns(&e.id)) {
            mine.insert(&entry.id, entry);
        }
        if mine.is_empty() {
            return Ok(());
        }
        let mine: Vec<&IndexEntry> = mine.into_values().collect();
        let classes: Vec<&str> = mine.iter().map(|e| e.class.as_str()).collect();
        let names: Vec<Option<&str>> = mine.iter().map(|e| e.name.as_deref()).collect();
        let ids: Vec<&str> = mine.iter().map(|e| e.id.as_str()).collect();
        let epochs: Vec<i64> = mine.iter().map(|e| i64::from(e.head.epoch)).collect();
        let seqs: Vec<i64> = mine.iter().map(|e| e.head.seq as i64).collect();
        let revs: Vec<i64> = mine.iter().map(|e| e.rev as i64).collect();
        self.client.execute(
            &format!(
                "INSERT INTO durable_objects (worker_name, class_name, name, id, log_id, write_id, insert_ts, update_ts, server_url, registry_rev)
                 SELECT $1, u.class, u.name, u.id, u.log_id, u.write_id, $2, $2, $3, u.rev
                 FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) AS u(class, name, id, log_id, write_id, rev)
                 {INDEX_HEAD_NEWER}"
            ),
            &[&worker, &now_ms(), &server_url, &classes, &names, &ids, &epochs, &seqs, &revs],
        )?;
        Ok(())
    }

    fn save_index_rev(&mut self, server_url: &str, shard: u32, rev: u64) -> Result<(), SinkError> {
        let part = self.part.to_string();
        self.client.execute(
            "INSERT INTO durafetch_servers (server_url, shard, part, index_rev) VALUES ($1, $2, $3, $4)
             ON CONFLICT (server_url, shard, part) DO UPDATE SET index_rev = excluded.index_rev",
            &[&server_url, &(shard as i32), &part, &(rev as i64)],
        )?;
        Ok(())
    }

    fn targets(&mut self, server_url: &str, key_filter: &str, every: bool) -> Result<Vec<PullTarget>, SinkError> {
        let rows = self.client.query(
            "SELECT do_id, class_name, id, name, local_max_log_id, local_max_write_id, key_filter IS NOT DISTINCT FROM $2, coalesce(local_sql_seq, 0)
             FROM durable_objects
             WHERE server_url = $1 AND (
                local_max_log_id IS NULL
                OR local_max_log_id < log_id
                OR (local_max_log_id = log_id AND local_max_write_id + coalesce(local_sql_seq, 0) < write_id)
                OR key_filter IS DISTINCT FROM $2
                OR $3)
             ORDER BY do_id",
            &[&server_url, &key_filter, &every],
        )?;
        let part = self.part;
        Ok(rows
            .iter()
            .map(|r| {
                let epoch: Option<i64> = r.get(4);
                let seq: Option<i64> = r.get(5);
                let same_filter: bool = r.get(6);
                PullTarget {
                    do_id: r.get(0),
                    class: r.get(1),
                    id: r.get(2),
                    name: r.get(3),
                    local: epoch.zip(seq).filter(|_| same_filter).map(|(e, s)| Cursor::new(e as u32, s as u64)),
                    local_sql: r.get::<_, i64>(7) as u64,
                    compare: false,
                }
            })
            .filter(|t| part.owns(&t.id))
            .collect())
    }

    fn begin(&mut self, do_id: i64, mode: ExportMode, read_at: Cursor, key_filter: &str, compare: bool) -> Result<WriteId, SinkError> {
        let row = self.client.query_one("SELECT worker_name, class_name, name FROM durable_objects WHERE do_id = $1", &[&do_id])?;
        let (worker, class): (String, String) = (row.get(0), row.get(1));
        let held_rows: bool = match mode {
            ExportMode::Snapshot => {
                let keys_or_schemas: bool = self
                    .client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM kv WHERE do_id = $1) OR EXISTS (SELECT 1 FROM sql_schemas WHERE do_id = $1)",
                        &[&do_id],
                    )?
                    .get(0);
                keys_or_schemas || sql_tables::holds_sql_rows(&mut self.client, &worker, &class, do_id)?
            }
            ExportMode::Changes => false,
        };
        let sweep_below =
            if held_rows { Some(self.client.query_one("SELECT nextval('durafetch_write_stamp')", &[])?.get::<_, i64>(0)) } else { None };
        self.client.execute("UPDATE durable_objects SET last_started_at = $2 WHERE do_id = $1", &[&do_id, &now_ms()])?;
        let reading = Reading { mode, read_at, key_filter, compare };
        Ok(self.writes.start(ObjectWrite::new(do_id, (worker, class, row.get(2)), reading, sweep_below, self.history)))
    }

    fn apply(&mut self, id: WriteId, changes: &[Change]) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, stamp| apply_changes(tx, write, stamp, changes))
    }

    fn apply_sql(&mut self, id: WriteId, page: &SqlPage) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, stamp| sql_tables::apply_sql_page(tx, write, stamp, page))
    }

    fn save_sql_schema(
        &mut self,
        id: WriteId,
        table: &str,
        statements: &[String],
        autoincrement: Option<i64>,
    ) -> Result<ApplyStats, SinkError> {
        let text = serde_json::to_string(statements).unwrap_or_default();
        self.write_page(id, |tx, write, stamp| {
            tx.execute(
                "INSERT INTO sql_schemas (do_id, table_name, statements, _pull_gen, autoincrement_counter) VALUES ($1, $2, $3::text::jsonb, $4, $5)
                 ON CONFLICT (do_id, table_name) DO UPDATE
                 SET statements = excluded.statements, _pull_gen = excluded._pull_gen, autoincrement_counter = excluded.autoincrement_counter",
                &[&write.do_id, &table, &text, &stamp, &autoincrement],
            )?;
            Ok(ApplyStats::default())
        })
    }

    fn drop_sql_table(&mut self, id: WriteId, table: &str) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, _| {
            tx.execute("DELETE FROM sql_schemas WHERE do_id = $1 AND table_name = $2", &[&write.do_id, &table])?;
            let deleted = sql_tables::drop_sql_table(tx, write, table)?;
            Ok(ApplyStats { deleted, ..ApplyStats::default() })
        })
    }

    fn finish(&mut self, id: WriteId, cursor: Cursor, sql: u64) -> Result<Swept, SinkError> {
        let write = self.writes.end(id)?;
        let mut tx = self.client.transaction()?;
        let now = now_ms();
        let swept = if let Some(below) = write.sweep_below {
            const UNSEEN: &str = "do_id = $1 AND (pull_gen IS NULL OR pull_gen < $2)";
            if write.history {
                let read_at = (i64::from(write.read_at.epoch), write.read_at.seq as i64);
                tx.execute(
                    &format!(
                        "INSERT INTO kv_history (do_id, worker_name, class_name, name, key, deleted, read_at_log_id, read_at_write_id, pulled_at)
                         SELECT do_id, worker_name, class_name, name, key, true, $3, $4, $5 FROM kv WHERE {UNSEEN}"
                    ),
                    &[&write.do_id, &below, &read_at.0, &read_at.1, &now],
                )?;
            }
            let keys = tx.execute(&format!("DELETE FROM kv WHERE {UNSEEN}"), &[&write.do_id, &below])?;
            tx.execute("DELETE FROM sql_schemas WHERE do_id = $1 AND (_pull_gen IS NULL OR _pull_gen < $2)", &[&write.do_id, &below])?;
            Swept { keys, rows: sql_tables::sweep_sql_rows(&mut tx, &write, below)? }
        } else {
            Swept::default()
        };
        tx.execute(
            "UPDATE durable_objects SET local_max_log_id = $2, local_max_write_id = $3, local_sql_seq = $6, update_ts = $4, key_filter = $5
             WHERE do_id = $1",
            &[&write.do_id, &i64::from(cursor.epoch), &(cursor.seq as i64), &now, &write.key_filter, &(sql as i64)],
        )?;
        tx.commit()?;
        Ok(swept)
    }

    fn abandon(&mut self, id: WriteId) {
        let _ = self.writes.end(id);
    }
}
