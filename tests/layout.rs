//! The crate's modules form no import cycle: data flows one way (extract → validate → authorize
//! → handler), the verified identity sits below validation and scope policy, outbound HTTP below
//! everything that fetches. Checked here on the source itself, so a new cycle fails the suite.
//!
//! A module depends on another when its code (not its comments, not its unit tests) names a path
//! `crate::other…` or `super::sibling…`. A module is a file: `src/a/b.rs` or `src/a/b/mod.rs` is
//! `a::b`. The library and the binary are checked separately.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` → `a::b`; the crate root (`lib.rs`, `main.rs`) → "".
fn module_name(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).expect("under root").with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comment lines and without its `#[cfg(test)] mod tests`.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every `prefix` path in `code`, as its `::`-separated identifiers.
fn paths_after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    code.match_indices(prefix).filter_map(move |(at, _)| {
        // `crate::` must start a path, not end an identifier (`foo_crate::`).
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &code[at + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        Some(rest[..end].split("::").filter(|s| !s.is_empty()).collect())
    })
}

/// The longest known module that `path` starts with.
fn resolve(modules: &BTreeSet<String>, path: &[&str]) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains(m))
}

fn graph(root: &Path, skip: &[&str]) -> Graph {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.retain(|f| !skip.iter().any(|s| f.starts_with(root.join(s))));
    let modules: BTreeSet<String> = files.iter().map(|f| module_name(root, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = module_name(root, file);
        let code = code(&fs::read_to_string(file).expect("read source"));
        let parent: Vec<&str> = name.split("::").filter(|s| !s.is_empty()).collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        let mut edges = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            edges.extend(resolve(&modules, &path));
        }
        for path in paths_after(&code, "super::") {
            let full: Vec<&str> = parent.iter().copied().chain(path).collect();
            edges.extend(resolve(&modules, &full));
        }
        // A module naming itself or its own children is no dependency between rooms.
        edges.retain(|m| !m.is_empty() && *m != name && !m.starts_with(&format!("{name}::")));
        graph.insert(name, edges);
    }
    graph
}

/// One cycle of `graph`, if it has any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_library_has_no_import_cycle() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &["bin"]);
    assert!(graph.len() > 20, "the walk found the modules: {:?}", graph.keys());
    assert_eq!(find_cycle(&graph), None, "an import cycle");
}

#[test]
fn the_binary_has_no_import_cycle() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/tower-bearer"), &[]);
    assert_eq!(find_cycle(&graph), None, "an import cycle");
}

/// The checker itself finds cycles (and only them).
#[test]
fn the_checker_finds_a_cycle() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in pairs {
            graph.entry(from.to_string()).or_default().insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert_eq!(find_cycle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    let cycle = find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    let modules: BTreeSet<String> = ["jwt", "jwt::jwks", "discovery"].iter().map(|s| s.to_string()).collect();
    assert_eq!(resolve(&modules, &["jwt", "jwks", "KeySet"]).as_deref(), Some("jwt::jwks"));
    let source =
        "use crate::jwt::jwks::{KeySet};\n// crate::discovery in a comment\nlet x = my_crate::discovery;";
    let stripped = code(source);
    let found: Vec<Vec<&str>> = paths_after(&stripped, "crate::").collect();
    assert_eq!(found, vec![vec!["jwt", "jwks"]]);
}
