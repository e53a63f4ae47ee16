//! `profile.json`: an ONNX model's execution times measured on K cores of the real device by
//! `corral plan --profile`, beside its config, so `--predict` and `--optimize` can plan it.
//!
//! ```json
//! {"device": "cpu", "cores_per_instance": 1, "samples_ms": [1.92, ...], "after_idle_ms": [2.31, ...]}
//! ```
//!
//! Two distributions, because a core's speed depends on what it did just before: an
//! execution that follows another at once (a queue) runs with warm caches and clocks, one
//! that starts on a core that waited for its call runs slower (by a fifth for squeezenet on
//! a 2-CPU VM, `bench/runs/2026-12-02-plan.md`). The simulator draws from the second when the
//! instance was idle before the call. Files without `after_idle_ms` (older ones) use
//! `samples_ms` for both.

use serde::{Deserialize, Serialize};

/// The file's name in a model folder.
pub const FILE: &str = "profile.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Where it was measured (`cpu`, `cpu:logical`).
    pub device: String,
    pub cores_per_instance: usize,
    /// Executions run back to back, milliseconds, ascending.
    pub samples_ms: Vec<f64>,
    /// Executions that each started on an idle core after a pause, milliseconds, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_idle_ms: Vec<f64>,
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
        if profile.samples_ms.is_empty() || !valid(&profile.samples_ms) {
            return Err(bad("samples_ms must hold execution times of 0 ms or more".to_owned()));
        }
        if !valid(&profile.after_idle_ms) {
            return Err(bad("after_idle_ms must hold execution times of 0 ms or more".to_owned()));
        }
        Ok(profile)
    }

    /// The back-to-back samples in seconds.
    pub fn seconds(&self) -> Vec<f64> {
        self.samples_ms.iter().map(|ms| ms / 1e3).collect()
    }

    /// The samples after idle in seconds (the back-to-back ones where none were measured).
    pub fn after_idle_seconds(&self) -> Vec<f64> {
        self.after_idle().iter().map(|ms| ms / 1e3).collect()
    }

    /// The after-idle samples, or the back-to-back ones where none were measured.
    fn after_idle(&self) -> &[f64] {
        if self.after_idle_ms.is_empty() { &self.samples_ms } else { &self.after_idle_ms }
    }

    /// The median back-to-back and after-idle execution times, milliseconds.
    pub fn medians(&self) -> (f64, f64) {
        (crate::report::percentile(&self.samples_ms, 0.5), crate::report::percentile(self.after_idle(), 0.5))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a profile serializes")
    }
}

fn valid(samples: &[f64]) -> bool {
    samples.iter().all(|s| s.is_finite() && *s >= 0.0)
}
