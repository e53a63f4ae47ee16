//! Checks of the workspace's own rules (rust-analyzer's tidy): every Rust file opens with a
//! `//!` paragraph, and the bottom crates stay free of threads-and-async dependencies.

use std::path::{Path, PathBuf};

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

#[test]
fn corral_cores_has_no_async_or_thread_pool_dependency() {
    let manifest = std::fs::read_to_string(workspace().join("crates/corral-cores/Cargo.toml")).expect("manifest");
    let dependencies = manifest.split("[dependencies]").nth(1).expect("has dependencies");
    let dependencies = dependencies.split("\n[").next().expect("section");
    for forbidden in ["tokio", "futures", "async-std", "rayon"] {
        assert!(!dependencies.contains(forbidden), "corral-cores must not depend on {forbidden}");
    }
}

#[test]
fn nothing_depends_on_the_python_bindings() {
    // corral-py sits on top of the runtime; the runtime and everything under it must build
    // without Python.
    for entry in std::fs::read_dir(workspace().join("crates")).expect("crates") {
        let dir = entry.expect("entry").path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        if !dir.ends_with("corral-py") {
            for forbidden in ["corral-py", "pyo3", "numpy"] {
                assert!(!manifest.contains(forbidden), "{} must not depend on {forbidden}", dir.display());
            }
        }
    }
}
