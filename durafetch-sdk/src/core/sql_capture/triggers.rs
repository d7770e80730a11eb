//! A recorded table's change set and the triggers that mark its rows there.

use super::own_tables::{ident, CURRENT_GENERATION, NEXT_OPEN_GENERATION, OPEN_GENERATION, SQL_PREFIX};
use super::shape::TableShape;

impl TableShape {
    /// The change set's `CREATE TABLE`: a rowid table keyed by the rowid, or a table without
    /// rowid keyed by the key's values (untyped: stored as they are, compared byte for byte), each
    /// row with the generation it last changed in. No other index: each mark is one row written.
    pub fn change_set_table(&self, change_set: &str) -> String {
        let set = ident(change_set);
        if self.rowid.is_some() {
            return format!("CREATE TABLE {set} (k INTEGER PRIMARY KEY, gen INTEGER NOT NULL)");
        }
        let key = self.change_set_key().join(", ");
        format!("CREATE TABLE {set} ({key}, gen INTEGER NOT NULL, PRIMARY KEY ({key})) WITHOUT ROWID")
    }

    /// Marks the row `alias` names as changed in the current generation, if `only_if` holds: an
    /// upsert that writes nothing when the row is already marked in it.
    fn mark(&self, change_set: &str, alias: &str, only_if: Option<&str>) -> String {
        self.mark_rows(change_set, &self.change_set_values(alias), CURRENT_GENERATION, "", only_if.unwrap_or("1"))
    }

    /// The upsert of [`Self::mark`], in generation `gen`, for the rows `values` name `from` a
    /// source (or none).
    fn mark_rows(&self, change_set: &str, values: &[String], gen: &str, from: &str, condition: &str) -> String {
        let set = ident(change_set);
        let key = self.change_set_key().join(", ");
        // The SELECT needs its WHERE: without one, SQLite would read ON as a join's.
        format!(
            "INSERT INTO {set} ({key}, gen) SELECT {}, {gen}{from} WHERE {condition} \
             ON CONFLICT ({key}) DO UPDATE SET gen = excluded.gen WHERE {set}.gen < excluded.gen;",
            values.join(", ")
        )
    }

    fn trigger_name(&self, kind: &str) -> String {
        format!("{SQL_PREFIX}{kind}_{}", self.name)
    }

    /// Whether `trigger` (one of [`super::OUR_TRIGGERS`]) is a conflict trigger, which names the
    /// columns of a UNIQUE index rather than only the table's key.
    pub fn is_conflict_trigger(trigger: &str) -> bool {
        let kind = trigger.get(SQL_PREFIX.len()..).unwrap_or_default().as_bytes();
        matches!(kind, [b'r' | b's', digit, ..] if digit.is_ascii_digit())
    }

    /// The triggers, by name: after each insert, update and delete, and before each insert or
    /// update that a UNIQUE index may make `REPLACE` remove other rows through, the marks of
    /// those rows (SQLite fires no delete trigger for them unless the user turns
    /// `recursive_triggers` on, and durafetch changes no setting of the user's). Each first opens
    /// the generation (a write once per export interval). Their text is compared with
    /// `sqlite_master`'s to find triggers that are missing or stale (a renamed table's).
    pub fn triggers(&self, change_set: &str) -> Vec<(String, String)> {
        let on = ident(&self.name);
        // Exactly, whatever the key's collation: `'a'` updated to `'A'` is another key.
        let key_moved: Vec<String> =
            self.key_exprs("OLD").iter().zip(self.key_exprs("NEW")).map(|(old, new)| self.same_key(old, &new)).collect();
        let key_moved = format!("NOT ({})", key_moved.join(" AND "));
        let mut triggers = vec![
            ("i".to_owned(), format!("AFTER INSERT ON {on}"), format!("{OPEN_GENERATION}; {}", self.mark(change_set, "NEW", None))),
            // A key changed by UPDATE: the old key's row is gone, the new one's is written.
            (
                "u".to_owned(),
                format!("AFTER UPDATE ON {on}"),
                format!("{OPEN_GENERATION}; {} {}", self.mark(change_set, "OLD", Some(&key_moved)), self.mark(change_set, "NEW", None)),
            ),
            ("d".to_owned(), format!("AFTER DELETE ON {on}"), format!("{OPEN_GENERATION}; {}", self.mark(change_set, "OLD", None))),
        ];
        let not_self: Vec<String> = self.key_exprs("t").iter().zip(self.key_exprs("OLD")).map(|(t, old)| self.same_key(t, &old)).collect();
        let not_self = format!("NOT ({})", not_self.join(" AND "));
        for (n, index) in self.unique.iter().enumerate() {
            let mut same: Vec<String> =
                index.columns.iter().map(|(c, coll)| format!("t.{col} = NEW.{col} COLLATE {}", ident(coll), col = ident(c))).collect();
            // A partial index's own condition, so that SQLite looks the row up through it
            // rather than reading the whole table.
            if let Some(condition) = &index.condition {
                same.push(format!("({condition})"));
            }
            let same = same.join(" AND ");
            // The statement may yet ignore the conflict (`OR IGNORE`, `DO NOTHING`) and change
            // nothing: the rows are marked in the generation the head opens to, but the head is
            // left to the row's own trigger, which runs only if a row is written.
            let body = |extra: &str| {
                self.mark_rows(
                    change_set,
                    &self.change_set_values("t"),
                    NEXT_OPEN_GENERATION,
                    &format!(" FROM {on} AS t"),
                    &format!("{same}{extra}"),
                )
            };
            let columns: Vec<String> = index.columns.iter().map(|(c, _)| ident(c)).collect();
            triggers.push((format!("r{}", n + 1), format!("BEFORE INSERT ON {on}"), body("")));
            triggers.push((
                format!("s{}", n + 1),
                if index.generated { format!("BEFORE UPDATE ON {on}") } else { format!("BEFORE UPDATE OF {} ON {on}", columns.join(", ")) },
                body(&format!(" AND {not_self}")),
            ));
        }
        triggers
            .into_iter()
            .map(|(kind, when, body)| {
                let name = self.trigger_name(&kind);
                let sql = format!("CREATE TRIGGER {} {when} BEGIN {body} END", ident(&name));
                (name, sql)
            })
            .collect()
    }
}
