//! `profile.json`: an ONNX model's execution times measured on K cores of the real device by
//! `corral plan --profile`, beside its config, so `--predict` and `--optimize` can plan it.
//!
//! ```json
//! {"device": "cpu", "cores_per_instance": 1, "samples_ms": [1.92, 1.95, ...]}
//! ```

use serde::{Deserialize, Serialize};

/// The file's name in a model folder.
pub const FILE: &str = "profile.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Where it was measured (`cpu`, `cpu:logical`).
    pub device: String,
    pub cores_per_instance: usize,
    /// Every measured execution, milliseconds, ascending.
    pub samples_ms: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{path}: not a profile: {reason}\nhint: measure it again with `corral plan --profile`")]
    Bad { path: String, reason: String },
}

impl Profile {
    /// Reads `text` (the file at `path`), refusing one without samples.
    pub fn parse(text: &str, path: &str) -> Result<Profile, ProfileError> {
        let bad = |reason: String| ProfileError::Bad { path: path.to_owned(), reason };
        let profile: Profile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if profile.samples_ms.is_empty() || profile.samples_ms.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
            return Err(bad("samples_ms must hold execution times of 0 ms or more".to_owned()));
        }
        Ok(profile)
    }

    /// The samples in seconds.
    pub fn seconds(&self) -> Vec<f64> {
        self.samples_ms.iter().map(|ms| ms / 1e3).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a profile serializes")
    }
}
