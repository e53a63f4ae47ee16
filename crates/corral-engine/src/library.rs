//! Where an engine's shared library is, when a Python wheel ships it (ONNX Runtime's
//! `onnxruntime/capi`, OpenVINO's `openvino/libs`): the package's folder on `python3`'s
//! import path (found without importing it), then the project's `.venv`, searched upwards from
//! the executable and then from the working directory. An engine's own environment variable,
//! checked before either, is the engine's to read.

use std::path::{Path, PathBuf};

/// `package`'s `subdir` holding a file whose name starts with `prefix` (the newest name
/// when several), on `python3`'s import path or in the project's `.venv`.
pub fn find_in_python(package: &str, subdir: &str, prefix: &str) -> Option<PathBuf> {
    if let Some(dir) = python_package_dir(package)
        && let Some(lib) = newest_in(&dir.join(subdir), prefix)
    {
        return Some(lib);
    }
    project_venvs()
        .find_map(|venv| venv_site_packages(&venv).find_map(|site| newest_in(&site.join(package).join(subdir), prefix)))
}

/// `package`'s folder in `python3`'s import path, found without importing it.
fn python_package_dir(package: &str) -> Option<PathBuf> {
    let find = format!(
        "import importlib.util as u; s = u.find_spec('{package}'); print(s.submodule_search_locations[0] if s else '')"
    );
    let output =
        std::process::Command::new("python3").args(["-c", &find]).stderr(std::process::Stdio::null()).output().ok()?;
    let dir = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Every `.venv` above the executable, then above the working directory.
fn project_venvs() -> impl Iterator<Item = PathBuf> {
    let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
    starts.into_iter().flatten().flat_map(|start| start.ancestors().map(|dir| dir.join(".venv")).collect::<Vec<_>>())
}

fn venv_site_packages(venv: &Path) -> impl Iterator<Item = PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).into_iter().flatten();
    lib.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|site| site.is_dir())
}

/// The project's `.venv` site-packages (searched upwards from the executable, then the
/// working directory): where `./scripts/setup` puts the wheel and the packages that ship
/// real models (`onnx`'s light models, `magika`, `silero-vad`).
pub fn project_site_packages() -> Option<PathBuf> {
    project_venvs().find_map(|venv| venv_site_packages(&venv).next())
}

/// The file of `dir` whose name starts with `prefix`, newest name first.
fn newest_in(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    libs.sort();
    libs.pop()
}
