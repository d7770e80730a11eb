//! durafetch's own tables in the object's database, by name, and the statements that make,
//! read and move them (the generation, the catalog reads, the legacy log's), with the quoting
//! every statement the capture builds goes through.

/// Every name durafetch creates in the object's database starts with this (any case). A user
/// statement naming it is refused before it runs.
pub const SQL_PREFIX: &str = "_durafetch_";
pub const STATE_TABLE: &str = "_durafetch_state";
pub const KNOWN_TABLE: &str = "_durafetch_known";
/// Each recorded table's change set is this followed by the table's id in [`KNOWN_TABLE`].
pub const CHANGE_SET_PREFIX: &str = "_durafetch_rows_";
/// Primary keys of more columns than this are not recorded (the table is named in a logged error).
pub const MAX_KEY_COLUMNS: usize = 8;

/// `_durafetch_known.mark`: readers drop every row of the table (it went, or durafetch refuses
/// it), or replace them by the table's current rows.
pub const MARK_GONE: i64 = 1;
pub const MARK_REPLACE: i64 = 2;

/// What a sync writes goes through this view's INSTEAD OF trigger: writes inside a trigger
/// leave `last_insert_rowid()` as the app's last statement left it.
pub const MARK_VIEW: &str = "_durafetch_mark";

/// The change set of the table known as `id`.
pub fn change_set(id: i64) -> String {
    format!("{CHANGE_SET_PREFIX}{id}")
}

/// Makes the head odd, once per export interval: the statement every recording starts with.
/// When the head is already odd it reads one row and writes none.
pub(crate) const OPEN_GENERATION: &str = "UPDATE _durafetch_state SET head = head + 1 WHERE head % 2 = 0";
/// The current generation, as a recording's value.
pub(crate) const CURRENT_GENERATION: &str = "(SELECT head FROM _durafetch_state)";
/// The generation the head opens to (or is open at), for a mark made before it is known that
/// anything changes: above every reader's cursor, without a write to the head.
pub(crate) const NEXT_OPEN_GENERATION: &str = "(SELECT head | 1 FROM _durafetch_state)";

/// durafetch's own tables, made if missing: a new object, or one whose tables `deleteAll` dropped.
/// A new head starts at `initial` (even), so that it never goes below one already reported.
pub fn schema(initial: u64) -> String {
    let initial = initial + initial % 2;
    format!(
        "CREATE TABLE IF NOT EXISTS {STATE_TABLE} (one INTEGER PRIMARY KEY CHECK (one = 1), head INTEGER NOT NULL);
         INSERT INTO {STATE_TABLE} (one, head) VALUES (1, {initial}) ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS {KNOWN_TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, shape TEXT, mark INTEGER NOT NULL, gen INTEGER NOT NULL);
         CREATE VIEW IF NOT EXISTS {MARK_VIEW} (id, name, shape, mark) AS SELECT NULL, NULL, NULL, NULL WHERE 0;
         CREATE TRIGGER IF NOT EXISTS {MARK_VIEW}_write INSTEAD OF INSERT ON {MARK_VIEW} BEGIN
             {OPEN_GENERATION};
             INSERT INTO {KNOWN_TABLE} (id, name, shape, mark, gen) VALUES (NEW.id, NEW.name, NEW.shape, NEW.mark, {CURRENT_GENERATION})
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, shape = excluded.shape, mark = excluded.mark, gen = excluded.gen;
         END;"
    )
}

/// The head: odd while changes since the last export are recorded.
pub const HEAD: &str = "SELECT head FROM _durafetch_state";
/// What an export does first: closes the generation if anything changed in it (one row written),
/// then reads the head its reader's cursor becomes.
pub const CLOSE_GENERATION: &str = "UPDATE _durafetch_state SET head = head + 1 WHERE head % 2 = 1; SELECT head FROM _durafetch_state";
/// Puts back a head the registry was told and a rolled-back transaction took away (`?1`).
pub const RAISE_HEAD: &str = "UPDATE _durafetch_state SET head = ?1 WHERE head < ?1";

/// The user tables: plain tables outside SQLite's, Cloudflare's (`_cf_`, any case), local
/// development's (`__miniflare_`, which names the object) and durafetch's names. Virtual tables
/// (fts5, rtree) take no triggers and their shadow tables are internal: neither is recorded.
pub const LIST_TABLES: &str = r"SELECT name, wr, type = 'virtual' FROM pragma_table_list
    WHERE schema = 'main' AND type IN ('table', 'virtual')
      AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\' AND name NOT LIKE '\_durafetch\_%' ESCAPE '\'
      AND name NOT LIKE '\_\_miniflare\_%' ESCAPE '\'
    ORDER BY name";
/// What the log knows of each table, as [`KnownTable`](super::KnownTable)'s fields.
pub const KNOWN_TABLES: &str = "SELECT id, name, shape, mark, gen FROM _durafetch_known ORDER BY id";
/// durafetch's triggers on the user's tables (not the one on [`MARK_VIEW`]).
pub const OUR_TRIGGERS: &str = r"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\_durafetch\_%' ESCAPE '\' AND tbl_name <> '_durafetch_mark'";
/// The change sets, for a count of their rows.
pub const CHANGE_SETS: &str = r"SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\_durafetch\_rows\_%' ESCAPE '\'";

/// The log of durafetch 0.x before generations: a change table of sequence numbers. Its head and
/// the tables it had marked gone are carried over once (see [`LEGACY_DROP`]).
pub const LEGACY_PRESENT: &str = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_durafetch_changes'";
pub const LEGACY_HEAD: &str = "SELECT coalesce(max(seq), 0) FROM _durafetch_changes";
pub const LEGACY_GONE: &str = "SELECT DISTINCT tbl FROM _durafetch_changes WHERE mark = 1";
pub const LEGACY_DROP: &str =
    "DROP VIEW IF EXISTS _durafetch_sync; DROP TABLE IF EXISTS _durafetch_changes; DROP TABLE IF EXISTS _durafetch_tables";
/// A table the old log had marked gone, known as gone from the new head on (bound: `?1`).
pub const LEGACY_MARK_GONE: &str = "INSERT INTO _durafetch_mark (id, name, shape, mark) \
     SELECT (SELECT coalesce(max(id), 0) + 1 FROM _durafetch_known), ?1, NULL, 1 WHERE NOT EXISTS (SELECT 1 FROM _durafetch_known WHERE name = ?1)";

/// The head a migrated log starts at: above every old sequence number, so that old cursors and
/// reported heads are all below it.
pub fn legacy_initial_head(old_max_seq: u64) -> u64 {
    2 * old_max_seq + 2
}

/// A table's columns in order: name, place in the primary key (0: not in it), declared type,
/// and whether it is generated (non-zero).
/// `pragma_table_xinfo`, unlike `pragma_table_info`, lists generated columns (`hidden` 2 or 3),
/// which a snapshot does not read but whose names hide the rowid as much as any column's.
pub const TABLE_COLUMNS: &str = "SELECT name, pk, type, hidden FROM pragma_table_xinfo(?1) ORDER BY cid";
/// A table's UNIQUE indexes, the primary key's included, one row per key column: the index,
/// where it comes from (`pk`, `u`, `c`), the column (`cid` -2: an expression) and its collation.
/// A partial index's `CREATE INDEX` text comes last (NULL for others), for its condition.
pub const UNIQUE_INDEX_COLUMNS: &str = r#"SELECT il.name, il.origin, ix.cid, ix.name, ix.coll,
        CASE WHEN il.partial THEN (SELECT sql FROM sqlite_master WHERE type = 'index' AND name = il.name) END
    FROM pragma_index_list(?1) AS il JOIN pragma_index_xinfo(il.name) AS ix
    WHERE il."unique" AND ix.key ORDER BY il.seq, ix.seqno"#;

/// An identifier, quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
