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
//!
//! Where the model's engine was chosen by timing (`auto`), both engines are measured: `engine`
//! names the chosen one, whose times are `samples_ms` / `after_idle_ms`, and `engines` holds
//! each engine's (`{"onnxruntime": {"samples_ms": [..], ..}, "openvino": {..}}`). Files
//! without them (older ones) read as before.

use std::collections::BTreeMap;

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
    /// The engine the samples above are of: the one the model runs on (files written before
    /// engines were recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Every engine measured, by name, with its samples (where `auto` chose between two, both:
    /// the chosen one's are also the samples above, which `--predict` uses).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engines: BTreeMap<String, Samples>,
}

/// One engine's execution times, milliseconds, ascending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    pub samples_ms: Vec<f64>,
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
        for (engine, samples) in &profile.engines {
            if samples.samples_ms.is_empty() || !valid(&samples.samples_ms) || !valid(&samples.after_idle_ms) {
                return Err(bad(format!("engines.{engine} must hold execution times of 0 ms or more")));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_with_and_without_engines_read_and_bad_engine_samples_are_named() {
        let old = r#"{"device": "cpu", "cores_per_instance": 1, "samples_ms": [1.0, 2.0]}"#;
        let profile = Profile::parse(old, "old.json").expect("an older file reads");
        assert_eq!((profile.engine, profile.engines.len()), (None, 0));
        let both = r#"{"device": "cpu", "cores_per_instance": 1, "samples_ms": [1.0], "engine": "openvino",
            "engines": {"onnxruntime": {"samples_ms": [2.0]}, "openvino": {"samples_ms": [1.0], "after_idle_ms": [1.5]}}}"#;
        let profile = Profile::parse(both, "both.json").expect("reads");
        assert_eq!(profile.engine.as_deref(), Some("openvino"));
        assert_eq!(profile.engines["openvino"].after_idle_ms, [1.5]);
        assert_eq!(Profile::parse(&profile.to_json(), "again.json").expect("round trip"), profile);
        let bad = both.replace(r#""onnxruntime": {"samples_ms": [2.0]}"#, r#""onnxruntime": {"samples_ms": []}"#);
        assert_eq!(
            Profile::parse(&bad, "bad.json").expect_err("no samples").to_string(),
            "bad.json: not a profile: engines.onnxruntime must hold execution times of 0 ms or more\nhint: measure it again with `corral plan --profile`"
        );
    }
}
