//! The module floors: every room of `src/` imports only rooms below it (no
//! import circles), and a policy never imports another policy. Read from
//! the source itself (`use crate::…`, `super::…` and inline `crate::…`
//! paths, test code included), so a new circle fails here the day it is
//! written. `src/fuzz.rs` (the fuzz harness, tests only) is left out.
//!
//! A room is a top-level module (`wire`, `http`, `router`, `upstream`,
//! `proxy`, `server`…), except that these are rooms of their own:
//! `config::units`, each policy (`policy::<name>`), each policy's serde types
//! (`policy::<name>::config`), and the policy floor's files (`policy::ctx`,
//! `policy::compile`, `policy::clock`, `policy::prehashed`); `policy` itself is `policy/mod.rs`,
//! the registry above every policy. So `config` may read a policy's config
//! types, which import only `config::units`, without reading the policy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`src/a/b/mod.rs` -> [a, b]).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// The room a module path belongs to.
fn room_of(src: &Path, path: &[String]) -> String {
    let Some(top) = path.first() else { return "lib".into() };
    match (top.as_str(), path.get(1).map(String::as_str), path.get(2).map(String::as_str)) {
        ("config", Some("units"), _) => "config::units".into(),
        ("policy", Some(name), third) if src.join("policy").join(name).is_dir() => {
            if third == Some("config") {
                format!("policy::{name}::config")
            } else {
                format!("policy::{name}")
            }
        }
        // The files beside `policy/mod.rs` (the shared context, compile
        // context, clock, prehashed maps) are the floor every policy stands on; `policy`
        // itself (mod.rs: the phase lists and the registry) sits above them.
        ("policy", Some(name), _) if src.join("policy").join(format!("{name}.rs")).is_file() => {
            format!("policy::{name}")
        }
        _ => top.clone(),
    }
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        if !path.is_empty() {
            out.push(format!("{prefix}{path}"));
        }
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let prefix = format!("{prefix}{head}");
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&inner[start..i], &prefix, out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&inner[start..], &prefix, out);
}

/// Every path a file names that starts with `crate::` or `super::`.
fn referenced_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let code: String = text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("self::") {
            expand(&tree, "", &mut paths);
        }
    }
    // Paths through a child module the file declares (`mod auth;` … `auth::compile`).
    for line in code.lines() {
        let decl = line.trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) else { continue };
        let needle = format!("{name}::");
        let mut rest = code.as_str();
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(format!("self::{}", tail[..len].trim_end_matches(':')));
            }
            rest = &tail[len..];
        }
    }
    // Inline paths (`crate::wire::field::list(…)`).
    for start in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(start) {
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            paths.push(tail[..len].trim_end_matches(':').to_string());
            rest = &tail[len..];
        }
    }
    paths
}

/// Resolves `crate::a::b` / `super::super::c` from `module` to a module path.
fn resolve(module: &[String], path: &str) -> Option<Vec<String>> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut base: Vec<String> = match segs.peek().copied() {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("super") | Some("self") => {
            let mut b = module.to_vec();
            while let Some(s) = segs.peek().copied() {
                match s {
                    "super" => {
                        b.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                segs.next();
            }
            b
        }
        _ => return None,
    };
    base.extend(segs.map(String::from));
    Some(base)
}

struct Graph {
    /// room -> room it imports -> one file that does so
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel == "main.rs" || rel == "fuzz.rs" {
            continue;
        }
        let module = module_of(&src, &file);
        let from = room_of(&src, &module);
        let text = std::fs::read_to_string(&file).unwrap();
        // Inside the `#[cfg(test)] mod tests` block at a file's end, `super` is the file's module.
        let (main, tests) = text.split_at(text.find("#[cfg(test)]\nmod ").unwrap_or(text.len()));
        let test_module: Vec<String> = module.iter().cloned().chain(["tests".to_string()]).collect();
        let named = referenced_paths(main)
            .into_iter()
            .map(|p| (p, &module))
            .chain(referenced_paths(tests).into_iter().map(|p| (p, &test_module)));
        for (path, module) in named {
            let Some(mut target) = resolve(module, &path) else { continue };
            if target.last().is_some_and(|s| s == "*") {
                target.pop();
            }
            if target.first().is_some_and(|t| t == "fuzz") {
                continue;
            }
            let to = room_of(&src, &target);
            if to != from && to != "lib" {
                edges.entry(from.clone()).or_default().entry(to).or_insert_with(|| rel.clone());
            }
        }
    }
    Graph { edges }
}

#[test]
fn no_import_circles_between_rooms() {
    let g = graph();
    // Kahn's algorithm: peel rooms that import nothing left; what remains is in circles.
    let rooms: BTreeSet<&String> = g.edges.keys().chain(g.edges.values().flat_map(|m| m.keys())).collect();
    let mut left: BTreeSet<&String> = rooms.clone();
    let mut floors = Vec::new();
    loop {
        let free: Vec<&String> = left
            .iter()
            .copied()
            .filter(|r| g.edges.get(*r).is_none_or(|deps| deps.keys().all(|d| !left.contains(d))))
            .collect();
        if free.is_empty() {
            break;
        }
        for r in &free {
            left.remove(r);
        }
        floors.push(free);
    }
    // Then peel from the top: rooms nothing left imports are not in a circle either.
    loop {
        let unused: Vec<&String> = left
            .iter()
            .copied()
            .filter(|r| !left.iter().any(|o| g.edges.get(*o).is_some_and(|d| d.contains_key(*r))))
            .collect();
        if unused.is_empty() {
            break;
        }
        for r in &unused {
            left.remove(r);
        }
    }
    if !left.is_empty() {
        let mut report = String::new();
        for r in &left {
            for (to, file) in g.edges.get(*r).into_iter().flatten() {
                if left.contains(to) {
                    report.push_str(&format!("  {r} -> {to}   (e.g. src/{file})\n"));
                }
            }
        }
        panic!("import circle among these rooms:\n{report}");
    }
    // The floors, bottom first, for whoever reads the test output.
    for (i, floor) in floors.iter().enumerate() {
        eprintln!("floor {i}: {}", floor.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
}

/// The files beside `policy/mod.rs` that every policy may import.
const FLOOR: [&str; 4] = ["ctx", "compile", "clock", "prehashed"];

#[test]
fn a_policy_imports_no_other_policy() {
    let g = graph();
    let mut wrong = Vec::new();
    for (from, deps) in &g.edges {
        let Some(name) = from.strip_prefix("policy::") else { continue };
        if FLOOR.contains(&name) {
            continue;
        }
        for (to, file) in deps {
            let allowed = match name.strip_suffix("::config") {
                // A policy's config types build on the config units only.
                Some(_) => to == "config::units",
                // Not the registry (`policy`), not another policy: the floor, its own config, other rooms.
                None => match to.strip_prefix("policy::") {
                    Some(other) => FLOOR.contains(&other) || other == format!("{name}::config"),
                    None => to != "policy",
                },
            };
            if !allowed {
                wrong.push(format!("  {from} -> {to}   (src/{file})"));
            }
        }
    }
    assert!(wrong.is_empty(), "a policy reaches into another room it must not:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_circles() {
    // The checker itself: a known edge is found, and a `use` tree expands.
    let g = graph();
    assert!(g.edges.get("server").is_some_and(|d| d.contains_key("proxy")), "server -> proxy not seen");
    // Through a child module the file declares (`pub mod auth;` … `auth::compile`).
    assert!(g.edges.get("policy").is_some_and(|d| d.contains_key("policy::auth")), "registry -> auth not seen");
    let mut out = Vec::new();
    expand("crate::a::{b, c::{d, e as f}}", "", &mut out);
    assert_eq!(out, ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]);
    assert_eq!(resolve(&["policy".into(), "ip".into()], "super::Outcome").unwrap(), ["policy", "Outcome"]);
}
