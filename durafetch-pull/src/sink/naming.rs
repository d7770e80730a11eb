//! The names the sink gives what it makes: a local table per (class, table), its columns (a
//! source column named as one of durafetch's own gets `_sql`), quoted identifiers, and for
//! PostgreSQL, which keeps 63 bytes of a name, the one rule that cuts a longer name so that it
//! is found again and two names never meet.

/// FNV-1a, 64 bits: a stable hash of names, the same on every machine and version.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// durafetch's own columns of a local table. A source column of one of these names (any case)
/// lands as `<name>_sql`.
const OWN_COLUMNS: [&str; 3] = ["do_id", "_row_key", "_pull_gen"];

pub(crate) fn local_table_name(class: &str, table: &str) -> String {
    format!("{class}.{table}")
}

pub(crate) fn local_column_name(column: &str) -> String {
    if OWN_COLUMNS.iter().any(|own| own.eq_ignore_ascii_case(column)) {
        format!("{column}_sql")
    } else {
        column.to_owned()
    }
}

/// The source column a local column holds, or `None` for durafetch's own.
pub(crate) fn source_column_name(local: &str) -> Option<String> {
    if OWN_COLUMNS.iter().any(|own| own.eq_ignore_ascii_case(local)) {
        return None;
    }
    let renamed = local.strip_suffix("_sql").filter(|stem| OWN_COLUMNS.iter().any(|own| own.eq_ignore_ascii_case(stem)));
    Some(renamed.unwrap_or(local).to_owned())
}

pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL cuts names at 63 bytes (and would then never find a longer one again): a longer
/// local name keeps its first 46 bytes or fewer (a whole character), then `~` and the 16 hex
/// digits of the FNV-1a hash of the whole name. Tables and columns alike.
pub(crate) fn postgres_name(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = fnv1a(name);
    let mut cut = 46;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &name[..cut])
}

/// The local column of the source column `column`.
pub(crate) fn postgres_column(column: &str) -> String {
    postgres_name(&local_column_name(column))
}
