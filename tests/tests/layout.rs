//! The shape of the source the guide promises: in each crate no module imports another that
//! imports it back (directly or through others), and no source file is over 450 lines. Read
//! with `syn`, so a `use` group, a `super::` path and a path written inline all count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_LINES: usize = 450;
const CRATES: [&str; 3] = ["durafetch-pull", "durafetch-sdk", "durafetch-macros"];

/// A module of a crate, as the path from its root (`[]` is `lib.rs`).
type Module = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file under `src` but the binary's `main.rs` (a crate of its own, which only
/// uses the library), with the module it is.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut module: Module = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
            let file = module.pop().unwrap();
            match file.as_str() {
                "main.rs" if module.is_empty() => continue,
                "lib.rs" if module.is_empty() => {}
                "mod.rs" => {}
                other => module.push(other.trim_end_matches(".rs").to_owned()),
            }
            found.insert(module, path);
        }
    }
    found
}

/// The paths one file names, each resolved to the deepest module of the crate it reaches.
struct Imports<'a> {
    known: &'a BTreeMap<Module, PathBuf>,
    /// The file's module, then the inline modules the visitor is inside.
    here: Module,
    found: BTreeSet<Module>,
    /// Modules a `use` named, by the name it gave them: a path that starts with that name
    /// starts at that module.
    aliases: BTreeMap<String, Module>,
    /// Files declared under `#[cfg(test)]`: the unit tests' own helpers.
    test_only: BTreeSet<Module>,
}

/// Whether an item is compiled for tests only. Tests may import across layers (a test of the
/// download runs a whole pull); the layering is the shipped code's.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
}

impl Imports<'_> {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else { return };
        let (mut at, rest): (Module, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.here.clone(), &segments[1..]),
            "super" => {
                let mut at = self.here.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    at.pop();
                    rest = &rest[1..];
                }
                (at, rest)
            }
            // A path that starts at a module a `use` named.
            alias if self.aliases.contains_key(alias) => (self.aliases[alias].clone(), &segments[1..]),
            // A path that starts at a child module of this one.
            _ => (self.here.clone(), segments),
        };
        let mut deepest = None;
        if first == "crate" || first == "self" || first == "super" || self.aliases.contains_key(first) {
            deepest = Some(at.clone());
        }
        for segment in rest {
            at.push(segment.clone());
            if self.known.contains_key(&at) {
                deepest = Some(at.clone());
            } else {
                break;
            }
        }
        if let Some(module) = deepest {
            // The deepest module that is a file: an inline module is part of its file.
            let mut module = module;
            while !self.known.contains_key(&module) {
                module.pop();
            }
            self.found.insert(module);
        }
    }

    /// Remembers `name` for the module `path` names, if it names one of the crate's modules.
    fn name_module(&mut self, path: &[String], name: String) {
        let before = std::mem::take(&mut self.found);
        self.resolve(path);
        let reached = std::mem::replace(&mut self.found, before);
        let module: Option<Module> = match path.first().map(String::as_str) {
            Some("crate") => Some(path[1..].to_vec()),
            Some("self") => Some(self.here.iter().chain(&path[1..]).cloned().collect()),
            Some("super") => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                Some(self.here[..self.here.len().saturating_sub(supers)].iter().chain(&path[supers..]).cloned().collect())
            }
            _ => None,
        };
        if let Some(module) = module.filter(|m| self.known.contains_key(m) && reached.contains(m)) {
            self.aliases.insert(name, module);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.resolve(prefix);
                self.name_module(prefix, name.ident.to_string());
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.resolve(prefix);
                self.name_module(prefix, rename.rename.to_string());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Imports<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if is_test_only(&item.attrs) {
            if item.content.is_none() {
                let mut child = self.here.clone();
                child.push(item.ident.to_string());
                self.test_only.insert(child);
            }
            return;
        }
        if item.content.is_some() {
            self.here.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.here.pop();
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`matches!`, `format!` arguments) are tokens: read the
        // ones that start at `crate`, `self` or `super`.
        let tokens = flat_tokens(mac.tokens.clone());
        let is = |i: usize, text: &str| tokens.get(i).is_some_and(|t| t == text);
        for (start, token) in tokens.iter().enumerate() {
            if !matches!(token.as_str(), "crate" | "super" | "self") || (start > 0 && is(start - 1, ":")) {
                continue;
            }
            let mut segments = vec![token.clone()];
            let mut i = start;
            while is(i + 1, ":") && is(i + 2, ":") {
                match tokens.get(i + 3) {
                    Some(next) if next.chars().all(|c| c.is_alphanumeric() || c == '_') => segments.push(next.clone()),
                    _ => break,
                }
                i += 3;
            }
            // `crate` alone is a visibility (`pub(crate)`), not a path.
            if segments.len() > 1 {
                self.resolve(&segments);
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// A macro call's tokens, groups opened, each as its text.
fn flat_tokens(stream: proc_macro2::TokenStream) -> Vec<String> {
    let mut flat = Vec::new();
    for token in stream {
        match token {
            proc_macro2::TokenTree::Group(group) => flat.extend(flat_tokens(group.stream())),
            other => flat.push(other.to_string()),
        }
    }
    flat
}

/// Each module's imports of other modules of its crate, test-only files and items left out.
fn import_graph(known: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for (module, path) in known {
        let file = syn::parse_file(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut imports =
            Imports { known, here: module.clone(), found: BTreeSet::new(), aliases: BTreeMap::new(), test_only: BTreeSet::new() };
        imports.visit_file(&file);
        imports.found.remove(module);
        test_only.extend(imports.test_only);
        graph.insert(module.clone(), imports.found);
    }
    // A test-only file's own children are test-only too.
    let is_test_only = |module: &Module| test_only.iter().any(|t| module.starts_with(t));
    graph.retain(|module, _| !is_test_only(module));
    for imports in graph.values_mut() {
        imports.retain(|module| !is_test_only(module));
    }
    graph
}

/// The groups of two or more modules that reach each other (Tarjan's strongly connected
/// components).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    fn connect<'g>(state: &mut State<'g>, node: &'g Module) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in &state.graph[node] {
            if !state.index.contains_key(next) {
                connect(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut group = Vec::new();
            loop {
                let member = state.stack.pop().unwrap();
                state.on_stack.remove(member);
                group.push(member.clone());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                state.found.push(group);
            }
        }
    }
    let mut state =
        State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), found: Vec::new() };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            connect(&mut state, node);
        }
    }
    state.found
}

fn shown(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let mut found = Vec::new();
    for krate in CRATES {
        let known = modules(&root().join(krate).join("src"));
        let graph = import_graph(&known);
        for group in circles(&graph) {
            let edges: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|to| group.contains(to)).map(move |to| format!("{} -> {}", shown(from), shown(to)))
                })
                .collect();
            found.push(format!("{krate}: {}", edges.join(", ")));
        }
    }
    assert!(found.is_empty(), "modules that import each other:\n{}", found.join("\n"));
}

/// Modules of a layer below, and the modules above them they must never reach, directly or
/// through others: an interface does not import its implementations. A module above is named
/// with its descendants, or alone after `=`.
const LAYERS: [(&str, &[&str], &[&str]); 3] = [
    (
        "durafetch-pull",
        &["sink::interface", "sink::database", "sink::plan", "sink::naming", "sink::postgres_error"],
        &["sink::sqlite", "sink::postgres", "sink::memory", "sink::thread", "=sink", "pull", "restore", "transport"],
    ),
    (
        "durafetch-pull",
        &["transport", "transport::error"],
        &["transport::websocket", "transport::one_response", "transport::dial", "pull", "sink"],
    ),
    ("durafetch-pull", &["settings::file", "settings::filter", "settings::pull"], &["pull", "restore", "transport"]),
];

#[test]
fn lower_layers_never_reach_the_layers_above() {
    let module = |s: &str| -> Module { s.split("::").map(str::to_owned).collect() };
    let mut found = Vec::new();
    for (krate, lower, upper) in LAYERS {
        let graph = import_graph(&modules(&root().join(krate).join("src")));
        for from in lower.iter().map(|m| module(m)) {
            assert!(graph.contains_key(&from), "{krate}: no module {}", shown(&from));
            let mut reached = BTreeSet::new();
            let mut next = vec![from.clone()];
            while let Some(at) = next.pop() {
                for to in &graph[&at] {
                    if reached.insert(to.clone()) {
                        next.push(to.clone());
                    }
                }
            }
            let above = |to: &Module| {
                upper.iter().any(|u| match u.strip_prefix('=') {
                    Some(alone) => *to == module(alone),
                    None => to.starts_with(&module(u)),
                })
            };
            for to in reached.iter().filter(|to| above(to)) {
                found.push(format!("{krate}: {} reaches {}", shown(&from), shown(to)));
            }
        }
    }
    assert!(found.is_empty(), "lower layers that reach a layer above:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_over_450_lines() {
    let mut long = Vec::new();
    for krate in CRATES {
        for path in modules(&root().join(krate).join("src")).values().chain(std::iter::once(&root().join(krate).join("src/main.rs"))) {
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            let lines = text.lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", path.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {}", long.join(", "));
}

/// The check itself: a circle of three files and one of a parent and its child are found, and
/// a chain is not.
#[test]
fn the_circle_check_finds_circles() {
    let module = |s: &str| -> Module {
        if s.is_empty() {
            vec![]
        } else {
            s.split("::").map(str::to_owned).collect()
        }
    };
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        ("", vec!["a", "d"]),
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["d::e"]),
        ("d::e", vec!["d"]),
        ("f", vec!["a"]),
    ]
    .into_iter()
    .map(|(from, to)| (module(from), to.into_iter().map(module).collect()))
    .collect();
    let mut found = circles(&graph);
    found.sort();
    assert_eq!(found, vec![vec![module("a"), module("b"), module("c")], vec![module("d"), module("d::e")]]);
}
