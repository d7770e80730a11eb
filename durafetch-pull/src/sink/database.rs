//! Which database a pull writes (a SQLite file or a PostgreSQL URL, shown without its
//! password) and which part of the objects a puller takes (`--shard I/N`).

use std::fmt;
use std::path::PathBuf;

use crate::sink::naming::fnv1a;

/// The database a pull writes: a `--db` or `db_file` that starts with `postgres://` or
/// `postgresql://` names a PostgreSQL database, anything else a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    File(PathBuf),
    Postgres(String),
}

impl Database {
    pub fn parse(value: PathBuf) -> Self {
        match value.to_str() {
            // A URL's scheme has no case; the client takes it in lower case only.
            Some(url) if ["postgres://", "postgresql://"].iter().any(|s| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s))) => {
                let (scheme, rest) = url.split_once("://").unwrap_or_default();
                Database::Postgres(format!("{}://{rest}", scheme.to_ascii_lowercase()))
            }
            _ => Database::File(value),
        }
    }
}

/// A file by its path; a PostgreSQL URL without its password, which must not reach a log.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::File(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    // The client also takes the password as a query parameter.
                    if parsed.query_pairs().any(|(key, _)| key == "password") {
                        let pairs: Vec<(String, String)> = parsed
                            .query_pairs()
                            .map(|(key, value)| {
                                let value = if key == "password" { "***".to_owned() } else { value.into_owned() };
                                (key.into_owned(), value)
                            })
                            .collect();
                        parsed.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    write!(f, "{parsed}")
                }
                Err(_) => f.write_str("postgres://(a URL that does not parse)"),
            },
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// The part of the objects one of several pullers takes (`--shard I/N`, I from 1 to N): the
/// objects whose id hashes to I - 1 modulo N. Ids are hashed, not registry shards assigned, so
/// that the parts stay even whatever the registry's shard count, and any N works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    pub const WHOLE: Part = Part { index: 1, count: 1 };

    /// Whether the object `id` is this part's, by the FNV-1a hash of the id: every puller of a
    /// database must agree.
    pub fn owns(&self, id: &str) -> bool {
        fnv1a(id) % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// The most parts (`--shard I/N`, `reshard --parts N`) a database's objects split into.
pub const MAX_PARTS: u32 = 1024;

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a part: give I/N with 1 <= I <= N <= {MAX_PARTS}, as in --shard 2/4");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count || count > MAX_PARTS {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_object_once_and_evenly() {
        let parts: Vec<Part> = (1..=4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let mut counts = [0u32; 4];
        for n in 0..4000u32 {
            let id = format!("{:064x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let owners: Vec<usize> = (0..4).filter(|&i| parts[i].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        assert!(Part::WHOLE.owns("anything"));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", ""] {
            assert!(bad.parse::<Part>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let db = Database::parse("postgres://puller:s3cret@db.internal:5433/backup".into());
        assert!(matches!(db, Database::Postgres(_)));
        assert_eq!(db.to_string(), "postgres://puller:***@db.internal:5433/backup");
        assert!(!format!("{db:?}").contains("s3cret"));
        assert_eq!(Database::parse("backup.sqlite".into()), Database::File("backup.sqlite".into()));
        assert_eq!(Database::parse("PostgreSQL://h/Db".into()), Database::Postgres("postgresql://h/Db".into()), "a scheme has no case");
        assert_eq!(Database::parse("postgres.sqlite".into()), Database::File("postgres.sqlite".into()));
        let in_query = Database::parse("postgres://puller@db.internal/backup?sslmode=require&password=s3cret".into());
        assert_eq!(in_query.to_string(), "postgres://puller@db.internal/backup?sslmode=require&password=***");
    }
}
