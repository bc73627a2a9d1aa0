//! The crate's files, and its capability folders, import each other without a cycle (the
//! layout in `src/lib.rs`): a new capability that imports a module which imports it back
//! fails here, naming the loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["messages", "write"]`) → file, for every file under `src/`.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The code of a file without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        out.push(format!("{prefix}{tree}"));
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&head, &inner[start..], out);
    }
}

/// A path a file names: from a `use` (with the name it is known by there, and whether the
/// file re-exports it: `pub use`), or inline (`crate::a::b(…)`).
struct Named {
    path: Vec<String>,
    alias: Option<String>,
    reexport: bool,
}

/// The paths a file names, made absolute (`crate::`, `super::`, `self::`, a child module).
fn named(me: &[String], code: &str, is_module: impl Fn(&[String]) -> bool) -> Vec<Named> {
    // `super` is the parent module, for `x/mod.rs` (module `x`) as for `x/y.rs` (`x::y`).
    let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        // A word of its own (not the end of `Pause `).
        if rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            rest = &rest[i + 4..];
            continue;
        }
        let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let reexport = rest[line_start..i].trim_start().starts_with("pub");
        let stmt_end = rest[i..].find(';').map_or(rest.len(), |e| i + e);
        let tree = rest[i + 4..stmt_end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut expanded = Vec::new();
        expand("", &tree, &mut expanded);
        for p in expanded {
            let mut parts = p.split(" as ");
            let p = parts.next().unwrap();
            let alias = parts.next().map(|a| a.trim().to_owned());
            let mut segs: Vec<String> = p.split("::").map(|s| s.trim().to_owned()).collect();
            let base: Vec<String> = match segs.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                Some("super") => parent.clone(),
                Some("self") => me.to_vec(),
                // A child module (`pub use tenant::Tenant` in `db/mod.rs`).
                Some(first) if is_module(&[me, &[first.to_owned()]].concat()) => {
                    segs.insert(0, String::new());
                    me.to_vec()
                }
                _ => continue,
            };
            segs.remove(0);
            let path = base.into_iter().chain(segs).collect();
            found.push(Named {
                path,
                alias,
                reexport,
            });
        }
        rest = &rest[stmt_end..];
    }
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + 7..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let path = tail[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        found.push(Named {
            path: path.collect(),
            alias: None,
            reexport: false,
        });
        rest = &tail[end..];
    }
    found
}

/// The file a path lands in: the longest module it names, through re-exports
/// (`crate::db::Tenant` is `db/tenant.rs` when `db` re-exports it).
fn file_of<'m>(
    path: &[String],
    modules: &'m BTreeMap<Vec<String>, PathBuf>,
    reexports: &BTreeMap<Vec<String>, Vec<String>>,
) -> Option<&'m Vec<String>> {
    for n in (1..=path.len()).rev() {
        if let Some(target) = reexports.get(&path[..n]) {
            let mut through = target.clone();
            through.extend_from_slice(&path[n..]);
            if through.as_slice() != path {
                return file_of(&through, modules, reexports);
            }
        }
        if let Some((k, _)) = modules.get_key_value(&path[..n]) {
            return Some(k);
        }
    }
    None
}

/// Every file's imports, as file → the files it names (re-exports followed).
fn file_edges() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&root);
    assert!(
        modules.len() > 50,
        "read the crate: {} files",
        modules.len()
    );
    let is_module = |m: &[String]| modules.contains_key(m);
    let named: BTreeMap<&Vec<String>, Vec<Named>> = modules
        .iter()
        .map(|(me, path)| (me, named(me, &code(path), is_module)))
        .collect();
    // `pub use a::b::C` in module `m` makes `m::C` a name of `a::b::C`.
    let mut reexports: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (me, names) in &named {
        for n in names.iter().filter(|n| n.reexport) {
            let Some(last) = n.alias.clone().or_else(|| n.path.last().cloned()) else {
                continue;
            };
            if last != "*" && last != "_" {
                reexports.insert([me.as_slice(), &[last]].concat(), n.path.clone());
            }
        }
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (me, names) in &named {
        for n in names.iter().filter(|n| !n.reexport) {
            if let Some(target) = file_of(&n.path, &modules, &reexports).filter(|t| t != me) {
                edges
                    .entry((*me).clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    edges
}

/// The first loop a depth-first search closes, as `a -> b -> a`.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<String> {
    fn visit<'a>(
        node: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) -> Option<String> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let lp: Vec<String> = stack[at..]
                .iter()
                .chain([&node])
                .map(|n| n.join("::"))
                .collect();
            return Some(lp.join(" -> "));
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let edges = file_edges();
    assert!(
        edges
            .get(&vec!["app".to_owned()])
            .is_some_and(|e| e.contains(&vec!["db".to_owned()])),
        "the imports were read"
    );
    if let Some(found) = find_cycle(&edges) {
        panic!("an import cycle: {found}");
    }
}

/// Counted by folder (`messages/*` is `messages`): no capability imports one that imports it
/// back. The shared state (`app`) and the wiring (`server`) are left out: every transport takes
/// the state, and the state holds the capabilities' handles, by design.
#[test]
fn no_capability_imports_one_that_imports_it_back() {
    let apart = |m: &Vec<String>| ["app", "server"].contains(&m[0].as_str());
    let mut folders: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, to) in file_edges() {
        for to in to {
            let (a, b) = (vec![from[0].clone()], vec![to[0].clone()]);
            if a != b && !apart(&a) && !apart(&b) {
                folders.entry(a).or_default().insert(b);
            }
        }
    }
    assert!(
        folders
            .get(&vec!["messages".to_owned()])
            .is_some_and(|e| e.contains(&vec!["conversations".to_owned()])),
        "the folders were read"
    );
    if let Some(found) = find_cycle(&folders) {
        panic!("capabilities that import each other: {found}");
    }
}
