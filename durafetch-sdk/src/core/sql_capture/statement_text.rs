//! What the exec hook reads of a call's SQL text, in one pass: whether it names durafetch's
//! reserved names, and whether it may change the schema or drop a column.

use super::own_tables::SQL_PREFIX;

/// What the exec hook needs to know of a call's SQL text, read in one pass over it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatementText {
    /// The text names durafetch's tables or triggers: refused, before it runs. Everything but
    /// comments counts: SQLite takes a string literal where a name is expected
    /// (`DELETE FROM '_durafetch_state'`), so a literal holding the prefix is refused too.
    /// Values bound as parameters are never looked at.
    pub names_reserved: bool,
    /// The text may change the schema: the word CREATE, ALTER or DROP stands in it outside
    /// string literals, quoted names and comments. Every statement that changes the schema holds
    /// one of them (a trigger's body cannot), so none is missed; a false start costs one sync
    /// that finds nothing to do. workerd refuses `PRAGMA schema_version`, which would have
    /// answered without reading the text.
    pub may_change_schema: bool,
    /// The text may drop an index and then a column it named (ALTER, DROP and INDEX all stand in
    /// it as words): SQLite refuses to drop a column that an index or a trigger names, so
    /// durafetch's triggers that name columns go first. (Without the DROP INDEX, SQLite refuses
    /// the column for its index, as it would without durafetch.)
    pub may_drop_column: bool,
}

impl StatementText {
    const RESERVED: u32 = 1;
    const SCHEMA: u32 = 2;
    const DROP_COLUMN: u32 = 4;

    /// The three answers as bits, as the exec wrapper keeps them per text: 1 names reserved,
    /// 2 may change the schema, 4 may drop a column.
    pub fn flags(self) -> u32 {
        let bit = |on: bool, bit: u32| if on { bit } else { 0 };
        bit(self.names_reserved, Self::RESERVED) | bit(self.may_change_schema, Self::SCHEMA) | bit(self.may_drop_column, Self::DROP_COLUMN)
    }

    pub fn from_flags(flags: u32) -> Self {
        StatementText {
            names_reserved: flags & Self::RESERVED != 0,
            may_change_schema: flags & Self::SCHEMA != 0,
            may_drop_column: flags & Self::DROP_COLUMN != 0,
        }
    }

    pub fn read(query: &str) -> Self {
        let (mut text, mut alter, mut drop, mut index) = (StatementText::default(), false, false, false);
        for (part, kind) in sql_parts(query) {
            text.names_reserved |= contains_ignoring_case(part, SQL_PREFIX);
            if kind != Part::Code {
                continue;
            }
            for word in part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')) {
                let is = |w: &str| word.eq_ignore_ascii_case(w);
                alter |= is("alter");
                drop |= is("drop");
                index |= is("index");
                text.may_change_schema |= is("create") || is("alter") || is("drop");
            }
        }
        text.may_drop_column = alter && drop && index;
        text
    }
}

/// [`StatementText::names_reserved`] of `query`.
pub fn names_reserved(query: &str) -> bool {
    StatementText::read(query).names_reserved
}

/// [`StatementText::may_change_schema`] of `query`.
pub fn may_change_schema(query: &str) -> bool {
    StatementText::read(query).may_change_schema
}

/// [`StatementText::may_drop_column`] of `query`.
pub fn may_drop_column(query: &str) -> bool {
    StatementText::read(query).may_drop_column
}

/// The condition of a partial index, from its `CREATE INDEX` text: what follows its WHERE, outside
/// quotes, comments and parentheses. The text is the schema's, never stored data.
pub(super) fn partial_index_condition(create_index: &str) -> Option<String> {
    let base = create_index.as_ptr() as usize;
    let mut depth = 0i32;
    for (part, kind) in sql_parts(create_index) {
        let at = (part.as_ptr() as usize).wrapping_sub(base);
        // A comment's stand-in space is not a slice of the text.
        if kind != Part::Code || at > create_index.len() {
            continue;
        }
        let mut word_start = None;
        for (i, c) in part.char_indices().chain(std::iter::once((part.len(), ' '))) {
            let in_word = c.is_ascii_alphanumeric() || c == '_' || c == '$';
            match (in_word, word_start) {
                (true, None) => word_start = Some(i),
                (false, Some(start)) => {
                    if depth == 0 && part[start..i].eq_ignore_ascii_case("where") {
                        return Some(create_index[at + i..].trim().to_owned());
                    }
                    word_start = None;
                }
                _ => {}
            }
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
        }
    }
    None
}

/// Where a `$name(...)` parameter that starts at `at` ends, if one does.
fn tcl_parameter_end(bytes: &[u8], at: usize) -> Option<usize> {
    let name = bytes[at + 1..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$' || **b == b':').count();
    let open = at + 1 + name;
    (name > 0 && bytes.get(open) == Some(&b'('))
        .then(|| bytes[open..].iter().position(|b| *b == b')').map_or(bytes.len(), |n| open + n + 1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Keywords, bare names and operators.
    Code,
    /// A string literal or a quoted name (`"..."`, `[...]`, `` `...` ``), quotes included.
    Quoted,
}

/// `query` cut into its code and its quoted parts, in order, without its comments (`-- ...` to
/// the end of the line, `/* ... */`). Inside a quoted part nothing starts a comment or another
/// quote; a doubled closing quote (`'it''s'`) reads as two parts side by side, which is as good
/// as one here.
fn sql_parts(query: &str) -> Vec<(&str, Part)> {
    let bytes = query.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut at) = (0, 0);
    let past = |from: usize, end: &[u8]| -> usize {
        bytes[from.min(bytes.len())..].windows(end.len()).position(|w| w == end).map_or(bytes.len(), |n| from + n + end.len())
    };
    while at < bytes.len() {
        let (end, kind) = match bytes[at] {
            b'\'' => (past(at + 1, b"'"), Some(Part::Quoted)),
            b'"' => (past(at + 1, b"\""), Some(Part::Quoted)),
            b'`' => (past(at + 1, b"`"), Some(Part::Quoted)),
            b'[' => (past(at + 1, b"]"), Some(Part::Quoted)),
            // A Tcl-style parameter (`$a(--)`, `:a(/*)`) is one token, whatever its parentheses
            // hold: nothing in them starts a comment.
            b'$' | b':' | b'@' | b'#' if tcl_parameter_end(bytes, at).is_some() => {
                at = tcl_parameter_end(bytes, at).unwrap_or(at + 1);
                continue;
            }
            b'-' if bytes.get(at + 1) == Some(&b'-') => (past(at + 2, b"\n"), None),
            b'/' if bytes.get(at + 1) == Some(&b'*') => (past(at + 2, b"*/"), None),
            _ => {
                at += 1;
                continue;
            }
        };
        // The cut points are ASCII bytes, so every part starts and ends on a character boundary.
        parts.push((&query[start..at], Part::Code));
        match kind {
            Some(kind) => parts.push((&query[at..end], kind)),
            // A comment separates words: `CREATE/**/TABLE` is two.
            None => parts.push((" ", Part::Code)),
        }
        start = end;
        at = end;
    }
    parts.push((&query[start..], Part::Code));
    parts
}

fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_found_in_any_case_and_schema_words_outside_quotes() {
        assert!(names_reserved("select * from _DuraFetch_changes"));
        assert!(names_reserved(r#"drop trigger "_durafetch_i_t""#));
        assert!(names_reserved("select 'it''s'; drop table [_durafetch_tables]"));
        assert!(names_reserved("select 'a' from x; -- c\n delete from _durafetch_changes"));
        assert!(!names_reserved("select * from durafetch"));
        assert!(names_reserved("DELETE FROM '_durafetch_changes'"), "a literal where a name goes");
        assert!(!may_change_schema(r#"SELECT 1 AS "create""#));
        assert!(may_change_schema(r#"SELECT 1 AS "'"; CREATE TABLE t2 (a)"#), "a quote inside a quoted name starts nothing");
        assert!(may_change_schema("SELECT [--]; DROP TABLE t"));
        assert!(may_drop_column("DROP INDEX i; ALTER TABLE t DROP c") && !may_drop_column("ALTER TABLE t DROP c"));
        assert!(names_reserved("WITH x AS (SELECT $a(--)) DELETE FROM _durafetch_changes"), "a Tcl parameter hides no comment");
        assert!(!names_reserved("select 1 -- _durafetch_changes\n; /* _durafetch_ */ select 2"));
        assert!(may_change_schema("ALTER TABLE t ADD c"));
        assert!(may_change_schema("insert into t values (1); -- then\n /* a table */ drop table t"));
        assert!(may_change_schema("/* v2; add */ CREATE TABLE t (a)"));
        assert!(may_change_schema("/**/Create/**/Index i ON t (a)"));
        assert!(may_change_schema("INSERT INTO t VALUES ('a;b'); ALTER TABLE t RENAME TO T"));
        assert!(!may_change_schema("INSERT INTO t VALUES (1)"));
        assert!(!may_change_schema("INSERT INTO t (created_at, dropped) VALUES ('alter', 'drop') -- drop\n"));
        assert!(!may_change_schema("UPDATE t SET alternative = 1 /* create */"));
        for text in ["SELECT 1", "SELECT * FROM _durafetch_state", "DROP INDEX i; ALTER TABLE t DROP c", "CREATE TABLE _durafetch_x (a)"] {
            let read = StatementText::read(text);
            assert_eq!(StatementText::from_flags(read.flags()), read, "{text}");
        }
        assert_eq!(StatementText::read("ALTER TABLE t ADD c").flags(), 2, "the bits the exec wrapper tests");
        assert_eq!(partial_index_condition("CREATE UNIQUE INDEX e ON t (email) WHERE deleted = 0").as_deref(), Some("deleted = 0"));
        assert_eq!(
            partial_index_condition("CREATE UNIQUE INDEX \"where\" ON t (a, (b WHERE)) /* where */ where c = 'where' AND d").as_deref(),
            Some("c = 'where' AND d")
        );
        assert_eq!(partial_index_condition("CREATE UNIQUE INDEX i ON t (a)"), None);
    }
}
