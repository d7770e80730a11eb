//! Which objects, keys and SQL tables a pull (or a restore) keeps: include/exclude by class, by
//! object name (glob), by key prefix and by SQL table name (glob). Excluded objects are still
//! listed in `durable_objects` (the index is cheap) but never downloaded; excluded keys and tables
//! are never written.

use durafetch_sdk::core::restore_protocol::KeyScope;
use glob::Pattern;

#[derive(Debug, thiserror::Error)]
#[error("{pattern:?} is not a valid name glob: {message}; use * and ? (example: --name 'user-*')")]
pub struct FilterError {
    pattern: String,
    message: String,
}

#[derive(Debug, Clone)]
pub struct Filter {
    classes: Vec<String>,
    exclude_classes: Vec<String>,
    names: Vec<Pattern>,
    exclude_names: Vec<Pattern>,
    keys: KeyScope,
    tables: Vec<Pattern>,
    exclude_tables: Vec<Pattern>,
    /// See [`Filter::key_filter_id`].
    key_filter_id: String,
}

/// The filter flags as given.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct FilterSpec {
    /// Only objects of this class (repeatable). Example: --class ChatRoom
    #[arg(long = "class", value_name = "CLASS")]
    pub classes: Vec<String>,
    /// Skip objects of this class (repeatable). Example: --exclude-class RateLimiter
    #[arg(long = "exclude-class", value_name = "CLASS")]
    pub exclude_classes: Vec<String>,
    /// Only objects whose name matches this glob (repeatable; unnamed objects never match). Example: --name 'room-*'
    #[arg(long = "name", value_name = "GLOB")]
    pub names: Vec<String>,
    /// Skip objects whose name matches this glob (repeatable). Example: --exclude-name 'test-*'
    #[arg(long = "exclude-name", value_name = "GLOB")]
    pub exclude_names: Vec<String>,
    /// Only keys starting with this prefix (repeatable). A pull under other key filters than the last downloads the objects again. Example: --key-prefix user:
    #[arg(long = "key-prefix", value_name = "PREFIX")]
    pub key_prefixes: Vec<String>,
    /// Drop keys starting with this prefix (repeatable). Example: --exclude-key-prefix cache:
    #[arg(long = "exclude-key-prefix", value_name = "PREFIX")]
    pub exclude_key_prefixes: Vec<String>,
    /// Only SQL tables whose name matches this glob (repeatable). A pull under other table filters than the last downloads the objects again. Example: --table 'orders*'
    #[arg(long = "table", value_name = "GLOB")]
    pub tables: Vec<String>,
    /// Drop SQL tables whose name matches this glob (repeatable). Example: --exclude-table 'cache_*'
    #[arg(long = "exclude-table", value_name = "GLOB")]
    pub exclude_tables: Vec<String>,
}

impl FilterSpec {
    /// The flags that give this filter again, for a command the puller prints.
    pub fn to_args(&self) -> Vec<String> {
        let groups: [(&str, &Vec<String>); 8] = [
            ("--class", &self.classes),
            ("--exclude-class", &self.exclude_classes),
            ("--name", &self.names),
            ("--exclude-name", &self.exclude_names),
            ("--key-prefix", &self.key_prefixes),
            ("--exclude-key-prefix", &self.exclude_key_prefixes),
            ("--table", &self.tables),
            ("--exclude-table", &self.exclude_tables),
        ];
        // `--flag=value`: a value that starts with `-` is still read as the flag's.
        groups.iter().flat_map(|(flag, values)| values.iter().map(move |v| format!("{flag}={v}"))).collect()
    }
}

fn patterns(globs: &[String]) -> Result<Vec<Pattern>, FilterError> {
    globs.iter().map(|g| Pattern::new(g).map_err(|e| FilterError { pattern: g.clone(), message: e.msg.to_owned() })).collect()
}

impl Filter {
    pub fn new(spec: FilterSpec) -> Result<Self, FilterError> {
        let mut id = serde_json::json!({ "in": spec.key_prefixes, "out": spec.exclude_key_prefixes });
        // Only when given, so that files pulled before table filters existed keep their identity.
        if !spec.tables.is_empty() || !spec.exclude_tables.is_empty() {
            id["tables_in"] = serde_json::json!(spec.tables);
            id["tables_out"] = serde_json::json!(spec.exclude_tables);
        }
        Ok(Filter {
            key_filter_id: id.to_string(),
            tables: patterns(&spec.tables)?,
            exclude_tables: patterns(&spec.exclude_tables)?,
            names: patterns(&spec.names)?,
            exclude_names: patterns(&spec.exclude_names)?,
            classes: spec.classes,
            exclude_classes: spec.exclude_classes,
            keys: KeyScope { prefixes: spec.key_prefixes, exclude_prefixes: spec.exclude_key_prefixes },
        })
    }

    /// Whether an object is downloaded. An object without a name (made with `newUniqueId`)
    /// matches no name glob: it is kept unless some `--name` is given.
    pub fn keeps_object(&self, class: &str, name: Option<&str>) -> bool {
        let class_in = self.classes.is_empty() || self.classes.iter().any(|c| c == class);
        let class_out = self.exclude_classes.iter().any(|c| c == class);
        let matches = |p: &Pattern| name.is_some_and(|n| p.matches(n));
        let name_in = self.names.is_empty() || self.names.iter().any(matches);
        let name_out = self.exclude_names.iter().any(matches);
        class_in && !class_out && name_in && !name_out
    }

    pub fn keeps_key(&self, key: &str) -> bool {
        self.keys.keeps(key)
    }

    /// The keys the filter keeps, as a restore's hello names them to the object.
    pub fn key_scope(&self) -> &KeyScope {
        &self.keys
    }

    pub fn keeps_table(&self, table: &str) -> bool {
        let table_in = self.tables.is_empty() || self.tables.iter().any(|p| p.matches(table));
        table_in && !self.exclude_tables.iter().any(|p| p.matches(table))
    }

    /// A stable description of the key and table filters, stored beside each object's cursor: an
    /// object pulled under other filters holds other rows, so it is pulled again from scratch.
    pub fn key_filter_id(&self) -> &str {
        &self.key_filter_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(spec: FilterSpec) -> Filter {
        Filter::new(spec).unwrap()
    }

    #[test]
    fn no_flags_keep_everything() {
        let f = filter(FilterSpec::default());
        assert!(f.keeps_object("A", None) && f.keeps_object("A", Some("x")) && f.keeps_key(""));
    }

    #[test]
    fn classes_and_names_include_then_exclude() {
        let f = filter(FilterSpec {
            classes: vec!["Users".into(), "Rooms".into()],
            exclude_classes: vec!["Rooms".into()],
            names: vec!["user-*".into()],
            exclude_names: vec!["user-test-?".into()],
            ..Default::default()
        });
        assert!(f.keeps_object("Users", Some("user-42")));
        assert!(!f.keeps_object("Users", Some("user-test-1")));
        assert!(f.keeps_object("Users", Some("user-test-12")), "? is one character");
        assert!(!f.keeps_object("Rooms", Some("user-1")));
        assert!(!f.keeps_object("Other", Some("user-1")));
        assert!(!f.keeps_object("Users", None), "a name glob needs a name");
        let only_excluded = filter(FilterSpec { exclude_names: vec!["tmp*".into()], ..Default::default() });
        assert!(only_excluded.keeps_object("A", None) && !only_excluded.keeps_object("A", Some("tmp1")));
    }

    /// The flags a printed command gives are the filter given.
    #[test]
    fn a_filter_gives_its_flags_back() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            filter: FilterSpec,
        }
        let args = ["x", "--class=Room", "--exclude-name=test-*", "--key-prefix=user:", "--key-prefix=-tmp", "--table=orders*"];
        let spec = Flags::parse_from(args).filter;
        assert_eq!(spec.key_prefixes, ["user:", "-tmp"]);
        assert_eq!(spec.to_args(), args[1..]);
        assert!(FilterSpec::default().to_args().is_empty());
    }

    #[test]
    fn key_prefixes_and_their_identity() {
        let f = filter(FilterSpec {
            key_prefixes: vec!["cfg:".into(), "user:".into()],
            exclude_key_prefixes: vec!["user:secret".into()],
            ..Default::default()
        });
        assert!(f.keeps_key("cfg:a") && f.keeps_key("user:1"));
        assert!(!f.keeps_key("user:secret:1") && !f.keeps_key("other"));
        assert_ne!(f.key_filter_id(), filter(FilterSpec::default()).key_filter_id());
        assert_eq!(f.key_filter_id(), f.clone().key_filter_id());
    }

    #[test]
    fn tables_include_then_exclude_and_join_the_identity() {
        let f = filter(FilterSpec { tables: vec!["order*".into()], exclude_tables: vec!["orders_tmp".into()], ..Default::default() });
        assert!(f.keeps_table("orders") && f.keeps_table("order_lines"));
        assert!(!f.keeps_table("orders_tmp") && !f.keeps_table("users"));
        assert!(filter(FilterSpec::default()).keeps_table("anything"));
        assert_ne!(f.key_filter_id(), filter(FilterSpec::default()).key_filter_id());
        assert_eq!(filter(FilterSpec::default()).key_filter_id(), r#"{"in":[],"out":[]}"#, "unchanged for files pulled before");
    }

    #[test]
    fn bad_globs_are_named() {
        let err = Filter::new(FilterSpec { names: vec!["[oops".into()], ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("[oops"), "{err}");
    }
}
