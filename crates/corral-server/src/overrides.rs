//! What a load request may give in place of the repository's files (Triton's repository
//! extension): a model configuration in JSON replacing `config.pbtxt`, and the model's files,
//! written into a private temporary folder for the load and removed after it.

use std::path::Path;

use corral_config::ModelConfig;

use corral_runtime::repository as runtime_repository;

use crate::repository::{RepoError, RepoModel, check_name, read, serve_config, versions};
use crate::triton;

/// What a load request may give in place of the repository's files (Triton's repository
/// extension): a model configuration (JSON) replacing `config.pbtxt`, and the model's files
/// (`file:1/model.onnx` → bytes), which need the configuration too.
#[derive(Clone, Debug, Default)]
pub struct LoadOverride {
    pub config: Option<String>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl LoadOverride {
    /// The `config` parameter: Triton's model configuration as JSON.
    pub fn config(&mut self, text: &str) {
        self.config = Some(text.to_owned());
    }

    /// A `file:<path>` parameter and its bytes; `key` is the whole parameter name.
    pub fn file(&mut self, key: &str, bytes: Vec<u8>) {
        let path = key.strip_prefix("file:").unwrap_or(key);
        self.files.push((path.to_owned(), bytes));
    }

    pub fn is_empty(&self) -> bool {
        self.config.is_none() && self.files.is_empty()
    }
}

/// A folder of files given with a load: private to this user (a random name made with mode
/// 0700 by `tempfile`, so no other local user can plant links in it or guess it), and
/// removed when dropped.
pub struct GivenFiles {
    root: tempfile::TempDir,
}

impl GivenFiles {
    /// The private folder the files were written under.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// Triton's model configuration in JSON (protobuf's JSON mapping, as Triton's
/// `JsonToModelConfig` reads it).
pub fn config_from_json(text: &str) -> Result<ModelConfig, String> {
    corral_config::from_json(text).map_err(|e| e.to_string())
}

/// Reads model `name` of `repo`, or as `over` gives it.
pub fn read_with(repo: &Path, name: &str, over: &LoadOverride) -> Result<(RepoModel, Option<GivenFiles>), RepoError> {
    check_name(name)?;
    if over.is_empty() {
        return Ok((read(repo, name)?, None));
    }
    let text = over.config.as_deref().ok_or_else(|| RepoError::Request(triton::override_needs_config()))?;
    let pbtxt = config_from_json(text).map_err(|e| RepoError::Request(triton::invalid_config_override(&e)))?;
    let (dir, given) = if over.files.is_empty() {
        let dir = repo.join(name);
        if !dir.is_dir() {
            return Err(RepoError::NotFound(name.to_owned()));
        }
        (dir, None)
    } else {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::Builder::new()
            .prefix("corral-load-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| RepoError::Given(format!("cannot make a private folder for the load's files: {e}")))?;
        let dir = root.path().join(name);
        for (path, bytes) in &over.files {
            let relative = Path::new(path);
            let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if path.is_empty() || !plain {
                return Err(RepoError::Request(triton::file_outside_model(path)));
            }
            let target = dir.join(relative);
            let written = std::fs::create_dir_all(target.parent().expect("joined under dir"))
                .and_then(|()| std::fs::write(&target, bytes));
            written.map_err(|e| RepoError::Given(format!("cannot write file:{path}: {e}")))?;
        }
        (dir, Some(GivenFiles { root }))
    };
    if crate::ensemble::is_ensemble(&pbtxt) {
        return Ok((crate::repository::read_ensemble(&dir, name, pbtxt)?, given));
    }
    let folder =
        runtime_repository::read_folder_with(&dir, pbtxt.clone()).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let mut config =
        serve_config(&pbtxt, &dir).map_err(|reason| RepoError::Request(triton::invalid_config_override(&reason)))?;
    config.platform = "onnxruntime_onnx".to_owned();
    Ok((RepoModel { versions: versions(name, folder), config, ensemble: None }, given))
}

#[cfg(test)]
mod tests {
    use corral_engine::ModelSource;

    use super::*;

    #[test]
    fn files_given_with_a_load_live_in_a_private_folder_removed_after_it() {
        use std::os::unix::fs::PermissionsExt;
        let repo = tempfile::tempdir().expect("repo");
        let mut over = LoadOverride::default();
        over.config(r#"{"platform": "onnxruntime_onnx"}"#);
        over.file("file:1/model.onnx", b"bytes".to_vec());
        let (model, given) = read_with(repo.path(), "m", &over).expect("reads");
        let given = given.expect("files were written");
        let root = given.root().to_owned();
        let mode = std::fs::metadata(&root).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "only this user may enter the folder");
        assert!(root.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("corral-load-")));
        assert_eq!(model.versions.len(), 1);
        assert_eq!(model.versions[0].def.name, "m@1");
        let ModelSource::Onnx(file) = &model.versions[0].def.source else { panic!("an onnx model") };
        assert!(file.starts_with(&root), "{}", file.display());
        assert_eq!(std::fs::read(file).expect("written"), b"bytes");
        // Two loads never share a folder: the name is random, not a counter.
        let (_, other) = read_with(repo.path(), "m", &over).expect("reads");
        assert_ne!(other.expect("files").root(), root);
        drop(given);
        assert!(!root.exists(), "removed once the load is done");
    }
}
