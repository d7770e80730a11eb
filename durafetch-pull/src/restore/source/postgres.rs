//! A backup in a PostgreSQL database a pull wrote (`--db postgres://...`), read on a connection
//! of its own in one read-only, repeatable-read transaction: a restore of an object reads it as
//! one moment of the database left it, even while pullers write.
//!
//! The connection lives on a thread of its own: PostgreSQL's blocking client runs a runtime of
//! its own, which cannot be started, used or dropped inside the restore's. Each read is sent
//! there and waited for.
//!
//! Keys and row keys are ordered by their bytes (`COLLATE "C"`), as the file orders them,
//! whatever the database's collation, so that a dry run walks the backup beside a file. No index
//! serves that order (the keys' are in the database's collation), so a page is not its own
//! query, which would sort the object's keys again each time: each sequence of pages is one
//! query, sorted once, whose rows are fetched a page at a time while the next page asked for
//! follows the last one fetched (a portal of the transaction).

use std::collections::HashMap;
use std::sync::mpsc;

use durafetch_sdk::core::protocol::{SqlRow, SqlValue};
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Portal, Row, Transaction};

use crate::restore::source::interface::{
    page_start, BackupObject, BackupSource, HistoryPage, KeyRecord, Moment, SourceError, TableSchema, TableSource, PAGE_ROWS,
};
use crate::sink::naming::{ident, postgres_column};
use crate::sink::postgres::columns::{ordered_columns, ColumnType};

type Read = Box<dyn FnOnce(&mut Reader<'_>) + Send>;

/// The connection's transaction, the sequence of pages being read, if any (closed first), and
/// the columns of each local table read so far, which the locks taken keep as they are.
struct Reader<'a> {
    open: Option<OpenPages>,
    tx: Transaction<'a>,
    columns: HashMap<String, Vec<(String, Option<ColumnType>)>>,
}

/// A query whose rows are being fetched a page at a time: which sequence it reads, the key (the
/// first column) of the last row fetched, and whether that was its last row.
struct OpenPages {
    pages: String,
    portal: Portal,
    last: Option<String>,
    done: bool,
}

/// The local tables of a worker's class, in name order.
fn class_tables(client: &mut impl GenericClient, (worker, class): (&str, &str)) -> Result<Vec<String>, postgres::Error> {
    let rows = client
        .query("SELECT local_table FROM sql_tables WHERE worker_name = $1 AND class_name = $2 ORDER BY local_table", &[&worker, &class])?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

impl<'a> Reader<'a> {
    /// The read-only transaction every read of the backup runs in. For an object (`class`: its
    /// worker and class), its class's SQL tables are locked before the snapshot is taken: a pull
    /// that changes a table's columns rewrites it, and a snapshot taken before the rewrite would
    /// find the table empty. A table the class gained between the listing and the snapshot is
    /// not locked: the read fails, to be tried again.
    fn start(client: &'a mut postgres::Client, class: Option<(&str, &str)>) -> Result<Self, SourceError> {
        // The tables of the schema a pull writes (`current_schema()`, as the sink finds them),
        // whether or not this role may read them.
        let made: bool =
            client.query_one("SELECT to_regclass(quote_ident(current_schema()) || '.durable_objects') IS NOT NULL", &[])?.get(0);
        if !made {
            return Err(SourceError::NotABackup);
        }
        let locals = match class {
            Some(class) => class_tables(client, class)?,
            None => Vec::new(),
        };
        let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))?;
        if !locals.is_empty() {
            let tables: Vec<String> = locals.iter().map(|local| ident(local)).collect();
            tx.batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", tables.join(", ")))?;
        }
        if let Some(class) = class {
            if class_tables(&mut tx, class)? != locals {
                return Err(SourceError::TablesChanged);
            }
        }
        Ok(Reader { open: None, tx, columns: HashMap::new() })
    }
}

impl Reader<'_> {
    /// The source columns of the local table `local` in order, with their types.
    fn columns_of(&mut self, local: &str) -> Result<&[(String, Option<ColumnType>)], SourceError> {
        if !self.columns.contains_key(local) {
            let columns = ordered_columns(&mut self.tx, local)?;
            self.columns.insert(local.to_owned(), columns);
        }
        Ok(&self.columns[local])
    }

    /// The page after `after` of the sequence `pages`, which `query` reads from there on with
    /// `params` (`after` among them), ordered by its first column: fetched from the query
    /// already open if it stopped at `after`, else from `query` run anew.
    fn page(&mut self, pages: String, after: Option<&str>, query: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, SourceError> {
        let follows = |open: &OpenPages| open.pages == pages && after.is_some() && open.last.as_deref() == after;
        let portal = match self.open.take() {
            Some(open) if follows(&open) && open.done => {
                self.open = Some(open);
                return Ok(Vec::new());
            }
            Some(open) if follows(&open) => open.portal,
            _ => self.tx.bind(query, params)?,
        };
        let rows = self.tx.query_portal(&portal, PAGE_ROWS as i32)?;
        let done = rows.len() < PAGE_ROWS as usize;
        let last = rows.last().map(|r| r.get::<_, String>(0)).or_else(|| after.map(str::to_owned));
        self.open = Some(OpenPages { pages, portal, last, done });
        Ok(rows)
    }
}

/// How long a restore waits to lock an object's tables: longer than a pull waits to change a
/// table's columns (`sink::postgres::columns`), which gives up first, so that a restore queued
/// behind such a pull goes on once the pull has.
const LOCK_TIMEOUT: &str = "30s";

pub struct PostgresBackup {
    reads: mpsc::Sender<Read>,
    moment: Moment,
    has_counters: bool,
}

impl PostgresBackup {
    /// The backup at `url` as it was at `moment`, read in one snapshot; for `object`, with its
    /// class's tables locked (none for a listing of the objects).
    pub fn open(url: &str, moment: Moment, object: Option<&BackupObject>) -> Result<Self, SourceError> {
        let (reads, incoming) = mpsc::channel::<Read>();
        let (opened, is_open) = mpsc::sync_channel(1);
        let url = url.to_owned();
        let class = object.map(|o| (o.worker.clone(), o.class.clone()));
        std::thread::spawn(move || {
            let mut client = match crate::sink::postgres::database::connect(&url) {
                Ok(client) => client,
                Err(e) => return drop(opened.send(Err(SourceError::from(e)))),
            };
            let mut reader = match Reader::start(&mut client, class.as_ref().map(|(w, c)| (w.as_str(), c.as_str()))) {
                Ok(reader) => reader,
                Err(e) => return drop(opened.send(Err(e))),
            };
            let _ = opened.send(Ok(()));
            // Until the backup is dropped; the transaction and the connection end here.
            for read in incoming {
                read(&mut reader);
            }
        });
        is_open.recv().unwrap_or(Err(SourceError::Stopped))?;
        let mut backup = PostgresBackup { reads, moment, has_counters: false };
        let (has_history, has_counters): (bool, bool) = backup.read(|reader| {
            let row = reader.tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM kv_history) OR EXISTS (SELECT 1 FROM sql_history),
                        EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                                AND table_name = 'sql_schemas' AND column_name = 'autoincrement_counter')",
                &[],
            )?;
            Ok((row.get(0), row.get(1)))
        })?;
        if matches!(moment, Moment::At(_)) && !has_history {
            return Err(SourceError::NoHistory);
        }
        backup.has_counters = has_counters;
        Ok(backup)
    }

    /// Runs `read` on the connection's thread and waits for its answer.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.reads.send(Box::new(move |reader| drop(answer.send(read(reader))))).map_err(|_| SourceError::Stopped)?;
        answered.recv().unwrap_or(Err(SourceError::Stopped))
    }

    fn local_table(client: &mut Transaction<'_>, object: &BackupObject, table: &str) -> Result<Option<String>, SourceError> {
        let row = client.query_opt(
            "SELECT local_table FROM sql_tables WHERE worker_name = $1 AND class_name = $2 AND table_name = $3",
            &[&object.worker, &object.class, &table],
        )?;
        Ok(row.map(|r| r.get(0)))
    }
}

impl BackupSource for PostgresBackup {
    fn moment(&self) -> Moment {
        self.moment
    }

    fn finished_objects(&self) -> Result<Vec<BackupObject>, SourceError> {
        self.read(|reader| {
            let client = &mut reader.tx;
            let rows = client.query(
                "SELECT do_id, worker_name, class_name, name, id FROM durable_objects WHERE local_max_log_id IS NOT NULL
                 ORDER BY worker_name COLLATE \"C\", class_name COLLATE \"C\", name COLLATE \"C\", id COLLATE \"C\"",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| BackupObject { do_id: r.get(0), worker: r.get(1), class: r.get(2), name: r.get(3), id: r.get(4) })
                .collect())
        })
    }

    fn knows(&self, object: &BackupObject) -> Result<bool, SourceError> {
        let Moment::At(at) = self.moment else { return Ok(true) };
        let do_id = object.do_id;
        let (partial, recorded) = self.read(move |reader| {
            let client = &mut reader.tx;
            let row = client.query_one(
                "SELECT EXISTS (SELECT 1 FROM kv k WHERE do_id = $1
                            AND NOT EXISTS (SELECT 1 FROM kv_history h WHERE h.do_id = k.do_id AND h.key = k.key)),
                        EXISTS (SELECT 1 FROM kv_history WHERE do_id = $1 AND pulled_at <= $2)
                            OR EXISTS (SELECT 1 FROM sql_history WHERE do_id = $1 AND pulled_at <= $2)",
                &[&do_id, &at],
            )?;
            Ok((row.get::<_, bool>(0), row.get::<_, bool>(1)))
        })?;
        if partial {
            return Err(SourceError::PartialHistory);
        }
        Ok(recorded)
    }

    fn key_page(&self, object: &BackupObject, after: Option<&str>) -> Result<(Vec<KeyRecord>, Option<String>), SourceError> {
        let (op, from) = page_start(after);
        let (do_id, from, after, moment) = (object.do_id, from.to_owned(), after.map(str::to_owned), self.moment);
        let records: Vec<KeyRecord> = self.read(move |reader| {
            let pages = format!("keys {do_id}");
            let rows = match moment {
                Moment::Latest => reader.page(
                    pages,
                    after.as_deref(),
                    &format!(
                        "SELECT key, false, val::text, val_type, val_blob, val_error FROM kv
                         WHERE do_id = $1 AND key COLLATE \"C\" {op} $2 ORDER BY key COLLATE \"C\""
                    ),
                    &[&do_id, &from],
                )?,
                Moment::At(at) => reader.page(
                    pages,
                    after.as_deref(),
                    &format!(
                        "SELECT key, deleted, val::text, val_type, val_blob, val_error FROM kv_history h
                         WHERE do_id = $1 AND key COLLATE \"C\" {op} $2
                           AND history_id = (SELECT max(history_id) FROM kv_history WHERE do_id = h.do_id AND key = h.key AND pulled_at <= $3)
                         ORDER BY key COLLATE \"C\""
                    ),
                    &[&do_id, &from, &at],
                )?,
            };
            Ok(rows
                .iter()
                .map(|r| KeyRecord { key: r.get(0), deleted: r.get(1), text: r.get(2), kind: r.get(3), blob: r.get(4), error: r.get(5) })
                .collect())
        })?;
        let last = records.last().map(|r| r.key.clone());
        Ok((records, last))
    }

    fn has_key(&self, object: &BackupObject, key: &str) -> Result<bool, SourceError> {
        let (do_id, key, moment) = (object.do_id, key.to_owned(), self.moment);
        self.read(move |reader| {
            let client = &mut reader.tx;
            Ok(match moment {
                Moment::Latest => client.query_opt("SELECT 1 FROM kv WHERE do_id = $1 AND key = $2", &[&do_id, &key])?.is_some(),
                Moment::At(at) => client
                    .query_opt(
                        "SELECT deleted FROM kv_history WHERE do_id = $1 AND key = $2 AND pulled_at <= $3 ORDER BY history_id DESC LIMIT 1",
                        &[&do_id, &key, &at],
                    )?
                    .is_some_and(|r| !r.get::<_, bool>(0)),
            })
        })
    }

    fn table_names(&self, object: &BackupObject) -> Result<Vec<String>, SourceError> {
        let (object, moment) = (object.clone(), self.moment);
        self.read(move |reader| {
            let client = &mut reader.tx;
            let rows = match moment {
                Moment::Latest => client.query(
                    "SELECT table_name FROM sql_tables WHERE worker_name = $1 AND class_name = $2 ORDER BY table_name COLLATE \"C\"",
                    &[&object.worker, &object.class],
                )?,
                Moment::At(at) => client.query(
                    "SELECT table_name FROM sql_history WHERE do_id = $1 AND pulled_at <= $2
                     GROUP BY table_name ORDER BY table_name COLLATE \"C\"",
                    &[&object.do_id, &at],
                )?,
            };
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn schema(&self, object: &BackupObject, table: &str) -> Result<Option<TableSchema>, SourceError> {
        let (do_id, table, query) = (
            object.do_id,
            table.to_owned(),
            if self.has_counters {
                "SELECT statements::text, autoincrement_counter FROM sql_schemas WHERE do_id = $1 AND table_name = $2"
            } else {
                "SELECT statements::text, NULL::bigint FROM sql_schemas WHERE do_id = $1 AND table_name = $2"
            },
        );
        self.read(move |reader| {
            let client = &mut reader.tx;
            let Some(row) = client.query_opt(query, &[&do_id, &table])? else { return Ok(None) };
            let statements = serde_json::from_str(row.get(0)).map_err(|e| SourceError::BadValue(format!("the schema of {table}: {e}")))?;
            Ok(Some(TableSchema { table, statements, autoincrement: row.get(1) }))
        })
    }

    fn local_rows_exist(&self, object: &BackupObject, table: &str) -> Result<bool, SourceError> {
        let (object, table) = (object.clone(), table.to_owned());
        self.read(move |reader| {
            let client = &mut reader.tx;
            let Some(local) = Self::local_table(client, &object, &table)? else { return Ok(false) };
            let query = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = $1)", ident(&local));
            Ok(client.query_one(&query, &[&object.do_id])?.get(0))
        })
    }

    fn table_source(&self, object: &BackupObject, schema: &TableSchema) -> Result<TableSource, SourceError> {
        let (object, table) = (object.clone(), schema.table.clone());
        let (local, names) = self.read(move |reader| {
            let Some(local) = Self::local_table(&mut reader.tx, &object, &table)? else { return Ok((None, Vec::new())) };
            let names = reader.columns_of(&local)?.iter().map(|(name, _)| name.clone()).collect();
            Ok((Some(local), names))
        })?;
        Ok(TableSource::new(schema, local, names, postgres_column))
    }

    fn latest_rows(&self, object: &BackupObject, source: &TableSource, after: Option<&str>) -> Result<Vec<SqlRow>, SourceError> {
        let Some(local) = source.local.clone() else { return Ok(Vec::new()) };
        let (op, from) = page_start(after);
        let (do_id, from, after, columns) = (object.do_id, from.to_owned(), after.map(str::to_owned), source.columns.clone());
        self.read(move |reader| {
            // Each column as its type holds it; a `jsonb` one (values of several types) as the
            // wire's text, which says each value's type.
            let types = reader.columns_of(&local)?;
            // A column the local table lacks holds NULL, read as a text that is never there.
            let kinds: Vec<ColumnType> = columns
                .iter()
                .map(|(name, _)| {
                    let typed = name.as_ref().and_then(|name| types.iter().find(|(n, _)| n == name));
                    typed.map_or(ColumnType::Text, |(_, kind)| kind.unwrap_or(ColumnType::Mixed))
                })
                .collect();
            let selected: String = columns
                .iter()
                .zip(&kinds)
                .map(|((name, _), kind)| match (name, kind) {
                    (None, _) => ", NULL::text".to_owned(),
                    (Some(name), ColumnType::Mixed) => format!(", {}::text", ident(name)),
                    (Some(name), _) => format!(", {}", ident(name)),
                })
                .collect();
            let query = format!(
                "SELECT _row_key{selected} FROM {} WHERE do_id = $1 AND _row_key COLLATE \"C\" {op} $2 ORDER BY _row_key COLLATE \"C\"",
                ident(&local)
            );
            let mut page = Vec::new();
            for row in reader.page(format!("rows {do_id} {local}"), after.as_deref(), &query, &[&do_id, &from])? {
                let mut values = Vec::with_capacity(kinds.len());
                for (i, kind) in kinds.iter().enumerate() {
                    let at = i + 1;
                    values.push(match kind {
                        ColumnType::Integer => row.get::<_, Option<i64>>(at).map_or(SqlValue::Null, SqlValue::Integer),
                        ColumnType::Real => row.get::<_, Option<f64>>(at).map_or(SqlValue::Null, SqlValue::Real),
                        ColumnType::Text => row.get::<_, Option<String>>(at).map_or(SqlValue::Null, SqlValue::Text),
                        ColumnType::Blob => row.get::<_, Option<Vec<u8>>>(at).map_or(SqlValue::Null, SqlValue::Blob),
                        ColumnType::Mixed => match row.get::<_, Option<String>>(at) {
                            None => SqlValue::Null,
                            Some(text) => serde_json::from_str(&text)
                                .map_err(|e| SourceError::BadValue(format!("{local} column {}: {e}", columns[i].1)))?,
                        },
                    });
                }
                page.push(SqlRow { k: row.get(0), v: Some(values) });
            }
            Ok(page)
        })
    }

    fn history_rows(&self, object: &BackupObject, table: &str, after: Option<&str>, at: i64) -> Result<HistoryPage, SourceError> {
        let (op, from) = page_start(after);
        let (do_id, table, from, after) = (object.do_id, table.to_owned(), from.to_owned(), after.map(str::to_owned));
        let query = format!(
            "SELECT row_key, CASE WHEN deleted THEN NULL ELSE coalesce(row, '{{}}')::text END FROM sql_history h
             WHERE do_id = $1 AND table_name = $2 AND row_key COLLATE \"C\" {op} $3
               AND history_id = (SELECT max(history_id) FROM sql_history
                                 WHERE do_id = h.do_id AND table_name = h.table_name AND row_key = h.row_key AND pulled_at <= $4)
             ORDER BY row_key COLLATE \"C\""
        );
        self.read(move |reader| {
            let pages = format!("history {do_id} {table}");
            let rows = reader.page(pages, after.as_deref(), &query, &[&do_id, &table, &from, &at])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}
