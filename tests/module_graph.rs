//! The library's top-level modules import each other without a circle.
//!
//! A top-level module is a folder under `src/` or a file directly in it. An edge
//! `a -> b` is a `crate::b` path in library code of `a` (unit-test modules, in a
//! file's `mod tests` or a `tests.rs` / `*_tests.rs` file, and `testing/`, which
//! exist only for tests, are left out). The test fails on a
//! circle and names it; `cargo test --test module_graph -- --nocapture` prints the
//! modules in an order where each imports only those before it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules that exist only for tests, and the crate root and binaries.
const LEFT_OUT: [&str; 3] = ["testing", "lib", "bin"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module `path` (under `src`) belongs to.
fn top_level(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy().into_owned();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// `text` without its unit-test module: everything from the line that opens
/// `mod tests` (and the `#[cfg(...)]` above it) on, which is how every file of the
/// crate places its tests.
fn library_part(text: &str) -> &str {
    match text.find("\nmod tests {") {
        Some(at) => {
            let before = &text[..at];
            let cfg = before.rfind("\n#[cfg(").unwrap_or(at);
            &text[..cfg]
        }
        None => text,
    }
}

/// The top-level modules `text` names as `crate::name`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// A circle in `graph`, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).expect("on the path");
                    let mut circle = path[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(circle) = visit(next, graph, state, path) {
                        return Some(circle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(circle);
            }
        }
    }
    None
}

#[test]
fn no_circle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = top_level(&src, file);
        let is_tests = file
            .file_stem()
            .is_some_and(|s| s == "tests" || s.to_string_lossy().ends_with("_tests"));
        if LEFT_OUT.contains(&module.as_str()) || is_tests {
            continue;
        }
        let text = fs::read_to_string(file).expect("a source file");
        let edges = graph.entry(module.clone()).or_default();
        for target in imports(library_part(&text)) {
            if target != module && !LEFT_OUT.contains(&target.as_str()) {
                edges.insert(target);
            }
        }
    }
    // Paths such as `crate::Result` name re-exports at the root, not modules.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|target| modules.contains(target));
    }
    assert!(graph.len() > 10, "found only {:?}", graph.keys());
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "the modules import each other in a circle: {}",
            circle.join(" -> ")
        );
    }
    // Each module after everything it imports.
    let mut order: Vec<String> = Vec::new();
    while order.len() < graph.len() {
        let next = graph
            .iter()
            .find(|(m, deps)| !order.contains(m) && deps.iter().all(|d| order.contains(d)))
            .map(|(m, _)| m.clone())
            .expect("acyclic, so one is ready");
        order.push(next);
    }
    for module in &order {
        let deps: Vec<&str> = graph[module].iter().map(String::as_str).collect();
        println!("{module:<12} -> {}", deps.join(" "));
    }
}
