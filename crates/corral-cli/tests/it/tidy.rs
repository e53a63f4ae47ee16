//! Checks of the workspace's own rules (rust-analyzer's tidy): every Rust file opens with a
//! `//!` paragraph, ARCHITECTURE.md's diagram is the real dependency graph, and every
//! dependency rule it states holds transitively (from `cargo metadata`).

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
