//! A model's own Python environment (Triton's `EXECUTION_ENV_PATH` parameter; config.toml's
//! `[python] env`): a folder used as it is, or a packed environment (`.tar.gz`, as conda-pack
//! makes) unpacked once into a private cache folder named after its contents' hash, under a
//! lock so that two servers (or two models) unpacking it at once unpack it once. Its
//! `bin/python3` (else `bin/python`) runs the model's stubs, with its `bin` first on `PATH` and
//! its `lib` on `LD_LIBRARY_PATH`, as an activated environment has them.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

/// The environment a model's configuration names (JSON mapping: `parameters`), with
/// `$$TRITON_MODEL_DIRECTORY` expanded to the model's folder (a relative path is taken from
/// there too); `None` when it names none.
pub fn named(config: &serde_json::Value, model_dir: &Path) -> Option<PathBuf> {
    let value = config["parameters"]["EXECUTION_ENV_PATH"]["string_value"].as_str()?;
    let expanded = value.replace("$$TRITON_MODEL_DIRECTORY", &model_dir.to_string_lossy());
    Some(model_dir.join(expanded))
}

/// The environment's folder (a packed one unpacked first) and its interpreter.
pub fn resolve(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let folder = if path.is_dir() {
        path.to_owned()
    } else if path.is_file() && path.to_string_lossy().ends_with(".tar.gz") {
        unpacked(path)?
    } else {
        return Err(format!(
            "EXECUTION_ENV_PATH {}: neither a folder nor a .tar.gz file\nhint: name a Python environment's folder or a conda-pack archive",
            path.display()
        ));
    };
    let interpreter = ["bin/python3", "bin/python"]
        .iter()
        .map(|p| folder.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("EXECUTION_ENV_PATH {}: no bin/python3 or bin/python in it", path.display()))?;
    Ok((folder, interpreter))
}

/// The cache folder a packed environment is unpacked into, unpacking it when absent.
fn unpacked(archive: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let said = |e: std::io::Error| format!("EXECUTION_ENV_PATH {}: {e}", archive.display());
    let hash = fnv(archive).map_err(said)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let cache = std::env::temp_dir().join(format!("corral-python-envs-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&cache) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(said(e)),
    }
    // Only a folder of this user's that nobody else may write: what is unpacked there runs.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(&cache).map_err(said)?;
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "{} is not a private folder of this user (it holds unpacked Python environments)\nhint: remove it",
                cache.display()
            ));
        }
    }
    let folder = cache.join(format!("{hash:016x}"));
    let lock = std::fs::File::create(cache.join(format!("{hash:016x}.lock"))).map_err(said)?;
    lock.lock().map_err(said)?;
    if !folder.is_dir() {
        let partial = cache.join(format!("{hash:016x}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir(&partial).map_err(said)?;
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(&partial)
            .status()
            .map_err(|e| format!("EXECUTION_ENV_PATH {}: cannot run tar: {e}", archive.display()))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(format!("EXECUTION_ENV_PATH {}: tar could not unpack it ({status})", archive.display()));
        }
        std::fs::rename(&partial, &folder).map_err(said)?;
        tracing::info!("unpacked {} into {}", archive.display(), folder.display());
    }
    Ok(folder)
}

/// FNV-1a over the file's bytes: the cache's key.
fn fnv(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hash);
        }
        for &byte in &buffer[..n] {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_used_as_it_is_and_a_packed_one_is_unpacked_once() {
        let dir = tempfile::tempdir().expect("dir");
        let env = dir.path().join("env");
        std::fs::create_dir_all(env.join("bin")).expect("bin");
        std::fs::write(env.join("bin/python3"), "#!/bin/sh\n").expect("python");
        let config =
            serde_json::json!({"parameters": {"EXECUTION_ENV_PATH": {"string_value": "$$TRITON_MODEL_DIRECTORY/env"}}});
        let path = named(&config, dir.path()).expect("named");
        assert_eq!(path, env);
        assert_eq!(resolve(&path).expect("a folder"), (env.clone(), env.join("bin/python3")));
        let archive = dir.path().join("env.tar.gz");
        let packed = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&env)
            .arg("bin")
            .status()
            .expect("tar");
        assert!(packed.success());
        let (first, python) = resolve(&archive).expect("unpacked");
        assert!(python.is_file() && python.starts_with(&first), "{}", python.display());
        let modified = std::fs::metadata(&python).expect("meta").modified().expect("time");
        assert_eq!(resolve(&archive).expect("again").0, first, "the same folder");
        assert_eq!(std::fs::metadata(&python).expect("meta").modified().expect("time"), modified, "not unpacked again");
        let missing = resolve(&dir.path().join("nowhere")).unwrap_err();
        assert!(missing.contains("neither a folder nor a .tar.gz file"), "{missing}");
        assert!(named(&serde_json::json!({}), dir.path()).is_none());
    }
}
