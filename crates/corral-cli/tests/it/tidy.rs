//! Checks of the workspace's own rules (rust-analyzer's tidy): every Rust file opens with a
//! `//!` paragraph, ARCHITECTURE.md's diagram is the real dependency graph, every dependency
//! rule it states holds transitively (from `cargo metadata`), and inside each crate the
//! modules form no cycle and ARCHITECTURE.md lists them all, bottom-up (from the sources).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/<name> sits two below the root").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 10, "found the sources");
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).expect("readable").starts_with("//!"))
        .map(|f| f.strip_prefix(workspace()).expect("inside").display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:?}");
}

/// The workspace's dependency graph from `cargo metadata`: package name -> names of its
/// normal and build dependencies (dev-dependencies do not ship).
struct Graph {
    deps: BTreeMap<String, BTreeSet<String>>,
    members: BTreeSet<String>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .current_dir(workspace())
            .output()
            .expect("cargo metadata runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let names: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
            .collect();
        let members = metadata["workspace_members"].as_array().expect("members").iter();
        let members = members.map(|id| names[id.as_str().expect("id")].to_owned()).collect();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in metadata["resolve"]["nodes"].as_array().expect("nodes") {
            let shipped = node["deps"].as_array().expect("deps").iter().filter(|dep| {
                dep["dep_kinds"].as_array().expect("kinds").iter().any(|k| k["kind"].is_null() || k["kind"] == "build")
            });
            let entry = deps.entry(names[node["id"].as_str().expect("id")].to_owned()).or_default();
            entry.extend(shipped.map(|dep| names[dep["pkg"].as_str().expect("pkg")].to_owned()));
        }
        Graph { deps, members }
    }

    /// Everything `name` pulls in, directly or not.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in self.deps.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// Direct dependencies of `name` on workspace crates.
    fn internal(&self, name: &str) -> BTreeSet<String> {
        self.deps[name].iter().filter(|d| self.members.contains(*d)).cloned().collect()
    }
}

#[test]
fn the_architecture_diagram_is_the_dependency_graph() {
    let graph = Graph::load();
    let text = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let diagram = text.split("```").nth(1).expect("the first code block is the diagram");
    let mut drawn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let names = |list: &str| -> Vec<String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.strip_suffix("(-ort)") {
                Some(base) => out.extend([base.to_owned(), format!("{base}-ort")]),
                None => out.push(name.to_owned()),
            }
        }
        out
    };
    for line in diagram.lines().filter(|l| l.contains("──►")) {
        let (from, to) = line.split_once("──►").expect("an edge");
        for source in names(from) {
            drawn.entry(source).or_default().extend(names(to));
        }
    }
    for member in &graph.members {
        assert_eq!(
            drawn.get(member).cloned().unwrap_or_default(),
            graph.internal(member),
            "ARCHITECTURE.md draws {member}'s dependencies wrong"
        );
    }
}

#[test]
fn dependency_rules_hold_transitively() {
    let graph = Graph::load();
    let forbid = |crate_name: &str, forbidden: &[&str], why: &str| {
        let closure = graph.closure(crate_name);
        let found: Vec<&&str> = forbidden.iter().filter(|f| closure.contains(**f)).collect();
        assert!(found.is_empty(), "{crate_name} pulls in {found:?}: {why}");
    };
    forbid("corral-cores", &["tokio", "futures", "futures-util", "async-std", "rayon"], "no threads, no async");
    forbid(
        "corral-runtime",
        &["corral-server", "tokio", "axum", "hyper", "tonic", "prost", "protobuf"],
        "the runtime knows nothing of serving or protobuf",
    );
    let pure = ["thiserror", "thiserror-impl", "proc-macro2", "quote", "syn", "unicode-ident"];
    let extra: Vec<String> =
        graph.closure("corral-placement").into_iter().filter(|d| !pure.contains(&d.as_str())).collect();
    assert!(extra.is_empty(), "corral-placement is pure (no IO, no threads): it pulls in {extra:?}");
    let allowed = [&pure[..], &["corral-placement"]].concat();
    let extra: Vec<String> =
        graph.closure("corral-dispatch").into_iter().filter(|d| !allowed.contains(&d.as_str())).collect();
    assert!(extra.is_empty(), "corral-dispatch is pure (no clock, lock or thread): it pulls in {extra:?}");
    // corral-py sits on top of the runtime; everything else builds without Python.
    for member in graph.members.iter().filter(|m| *m != "corral-py") {
        forbid(member, &["corral-py", "pyo3", "numpy"], "nothing depends on the Python bindings");
    }
}

/// Every crate's features in a build of `package` alone (with `extra` flags), as `cargo tree`
/// resolves them: "name version" -> features.
fn features_of(package: &str, extra: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-p", package, "-e", "normal,build", "--prefix", "none"])
        .args(["-f", "{p}|{f}"])
        .args(extra)
        .current_dir(workspace())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((crate_, list)) = line.split_once('|') else { continue };
        let mut words = crate_.split_whitespace();
        let id = format!("{} {}", words.next().unwrap_or(""), words.next().unwrap_or(""));
        let list = list.split_whitespace().next().unwrap_or("");
        // `(*)` marks a crate already listed: no features of its own.
        let named = list.split(',').filter(|f| !f.is_empty() && !f.starts_with('('));
        features.entry(id).or_default().extend(named.map(str::to_owned));
    }
    features
}

/// ./scripts/setup builds the CLI and then the Python package: a shared crate with other
/// features in the second build is compiled again, with everything above it (minutes on the
/// 2-CPU machine). corral-py names the CLI graph's extra features (see its Cargo.toml). Both
/// ways setup builds: with the tract feature (tests) and without (the demo).
#[test]
fn the_python_package_builds_on_the_clis_dependencies() {
    for extra in [&[][..], &["--no-default-features"][..]] {
        let cli = features_of("corral-cli", extra);
        let py = features_of("corral-py", extra);
        let differ: Vec<String> = py
            .iter()
            .filter_map(|(id, features)| {
                let theirs = cli.get(id)?;
                (theirs != features).then(|| {
                    let only_cli: Vec<&String> = theirs.difference(features).collect();
                    let only_py: Vec<&String> = features.difference(theirs).collect();
                    format!("{id}: CLI only {only_cli:?}, corral-py only {only_py:?}")
                })
            })
            .collect();
        assert!(differ.is_empty(), "{extra:?}: give corral-py's Cargo.toml the same features:\n{}", differ.join("\n"));
    }
}

/// A crate's modules (the files and folders of `src/`, less `lib` and `main`) and, for each,
/// the modules its code names through `crate::` (in `use crate::{…}` groups and inline
/// paths; comments and a trailing `#[cfg(test)]` module left out; names `lib.rs` re-exports
/// resolved to the module they come from).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let code = |path: &Path| -> String {
        let text = std::fs::read_to_string(path).expect("readable");
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
    };
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src") {
        let path = entry.expect("entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("utf-8").to_owned();
        if path.is_dir() {
            rust_files(&path, files.entry(stem).or_default());
        } else if path.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main" {
            files.entry(stem).or_default().push(path);
        }
    }
    // `pub use module::{A, b::C}` in lib.rs: every name in it stands for `module`.
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    let root = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.exists()).expect("a crate root");
    for statement in code(&root).split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else { continue };
        let Some((module, names)) = rest.split_once("::") else { continue };
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|n| !n.is_empty()) {
            exported.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    let resolve = |name: &str| -> Option<String> {
        let module = if files.contains_key(name) { Some(name) } else { exported.get(name).map(String::as_str) };
        module.filter(|m| files.contains_key(*m)).map(str::to_owned)
    };
    let mut graph = BTreeMap::new();
    for (module, paths) in &files {
        let mut uses = BTreeSet::new();
        for path in paths {
            let text = code(path);
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    // A group: the first segment of each item at its top level.
                    Some(group) => {
                        let (mut depth, mut items, mut start) = (0, Vec::new(), 0);
                        for (i, c) in group.char_indices() {
                            match c {
                                '{' => depth += 1,
                                '}' if depth == 0 => {
                                    items.push(&group[start..i]);
                                    break;
                                }
                                '}' => depth -= 1,
                                ',' if depth == 0 => {
                                    items.push(&group[start..i]);
                                    start = i + 1;
                                }
                                _ => {}
                            }
                        }
                        items
                    }
                    None => vec![rest],
                };
                for item in names {
                    let first = item.trim().split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
                    if let Some(target) = resolve(first).filter(|t| t != module) {
                        uses.insert(target);
                    }
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// The module list of each `## crates/<name>` section of ARCHITECTURE.md: the names in
/// backquotes after "Modules, bottom-up:" or "Modules point down:", up to the end of that
/// sentence, leaving out what parentheses say about them.
fn module_lists(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut lists = BTreeMap::new();
    for section in text.split("\n## crates/").skip(1) {
        let name = section.split_whitespace().next().expect("a crate name").to_owned();
        let Some(at) = section.find("Modules, bottom-up:").or_else(|| section.find("Modules point down:")) else {
            continue;
        };
        let (mut depth, mut kept) = (0, String::new());
        let mut chars = section[at..].split_once(':').expect("a colon").1.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ';' if depth == 0 => break,
                '.' if depth == 0 && chars.peek().is_none_or(|n| n.is_whitespace()) => break,
                c if depth == 0 => kept.push(c),
                _ => {}
            }
        }
        lists.insert(name, kept.split('`').skip(1).step_by(2).map(str::to_owned).collect());
    }
    lists
}

/// What is wrong with `list` as the bottom-up module list of `graph`: modules it misses or
/// names that are none, and each use that points up the list.
fn list_problems(graph: &BTreeMap<String, BTreeSet<String>>, list: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let listed: BTreeSet<&String> = list.iter().collect();
    for module in graph.keys().filter(|m| !listed.contains(m)) {
        problems.push(format!("`{module}` is not listed"));
    }
    for name in list.iter().filter(|n| !graph.contains_key(*n)) {
        problems.push(format!("`{name}` is listed but is no module"));
    }
    let place = |m: &str| list.iter().position(|n| n == m);
    for (module, uses) in graph {
        for used in uses {
            if let (Some(a), Some(b)) = (place(module), place(used))
                && b > a
            {
                problems.push(format!("`{module}` uses `{used}`, listed above it"));
            }
        }
    }
    problems
}

#[test]
fn modules_form_no_cycle_and_architecture_lists_them_bottom_up() {
    let text = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let lists = module_lists(&text);
    let mut problems = Vec::new();
    let mut crates: Vec<PathBuf> =
        std::fs::read_dir(workspace().join("crates")).expect("crates").map(|e| e.expect("entry").path()).collect();
    crates.sort();
    for dir in crates {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("utf-8").to_owned();
        let graph = module_graph(&dir.join("src"));
        if let Some(cycle) = find_cycle(&graph) {
            problems.push(format!("{name}: modules form a cycle: {}", cycle.join(" -> ")));
        }
        match lists.get(&name) {
            Some(list) => problems.extend(list_problems(&graph, list).into_iter().map(|p| format!("{name}: {p}"))),
            None if graph.len() > 1 => problems.push(format!("{name}: ARCHITECTURE.md lists no modules")),
            None => {}
        }
    }
    assert!(problems.is_empty(), "ARCHITECTURE.md's module rules do not hold:\n{}", problems.join("\n"));
}

#[test]
fn the_module_checks_catch_a_planted_cycle_and_a_stale_list() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "//! root\nmod a;\nmod b;\nmod c;\npub use c::Thing;\n").expect("write");
    std::fs::write(src.join("a.rs"), "//! a\nuse crate::{b::{self, X}, Thing};\n").expect("write");
    std::fs::write(src.join("b.rs"), "//! b\n// crate::a in a comment is no use\npub fn f() { crate::a::g() }\n")
        .expect("write");
    std::fs::write(src.join("c.rs"), "//! c\npub struct Thing;\n#[cfg(test)]\nmod tests { use crate::a; }\n")
        .expect("write");
    let graph = module_graph(src);
    let uses = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!((uses("a"), uses("b"), uses("c")), (vec!["b".to_owned(), "c".to_owned()], vec!["a".to_owned()], vec![]));
    assert_eq!(find_cycle(&graph), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
    let text =
        "# A\n\n## crates/x\n\nModules, bottom-up: `c` (things, `not_a_module`) → `a` → `b`; `lib.rs` re-exports.\n";
    let list = &module_lists(text)["x"];
    assert_eq!(list, &["c", "a", "b"]);
    assert_eq!(list_problems(&graph, list), ["`a` uses `b`, listed above it"]);
    let stale = &module_lists("# A\n\n## crates/x\nModules point down: `c`, `a`, `gone`.\n")["x"];
    assert_eq!(list_problems(&graph, stale), ["`b` is not listed", "`gone` is listed but is no module"]);
}
