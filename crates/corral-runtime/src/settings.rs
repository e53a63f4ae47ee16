//! How a runtime is set up: its settings and the environment values it reads itself.

use std::{sync::Arc, time::Duration};

use corral_cores::TakeSettings;
use corral_engine::Engine;

/// `CORRAL_EXEC_TIMEOUT`: seconds a call may wait to start before failing.
pub const EXEC_TIMEOUT_ENV: &str = "CORRAL_EXEC_TIMEOUT";
pub const EXEC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// `CORRAL_AUTOPILOT`: `1`/`true`/`on` turns the autopilot on, `0`/`false`/`off` off.
pub const AUTOPILOT_ENV: &str = "CORRAL_AUTOPILOT";
/// `CORRAL_AUTOPILOT_INTERVAL`: seconds between decisions.
pub const AUTOPILOT_INTERVAL_ENV: &str = "CORRAL_AUTOPILOT_INTERVAL";
/// The interval when none is given.
pub const AUTOPILOT_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);
/// The shortest and longest intervals taken.
pub const AUTOPILOT_INTERVAL_RANGE: (f64, f64) = (0.05, 60.0);

/// A setting's value that cannot be taken.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value} is not valid: {reason}\nhint: {hint}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
    pub hint: &'static str,
}

/// How a runtime is set up; `Default` reads everything from the environment.
#[derive(Clone)]
pub struct RuntimeSettings {
    /// Device, explicit core request and lock folder (else the environment's).
    pub take: TakeSettings,
    /// Else `CORRAL_EXEC_TIMEOUT`, else 30 s.
    pub exec_timeout: Option<Duration>,
    /// Calls queued per instance before callers wait (and time out).
    pub queue_len_max: usize,
    /// Same-model calls an instance runs in a row on its gang before letting others in
    /// (1 = plain FIFO order).
    pub run_max: usize,
    /// The engine for ONNX models (ONNX Runtime, OpenVINO or tract), chosen by the caller.
    pub onnx_engine: Option<Arc<dyn Engine>>,
    /// The engine for Triton Python models (`model.py`; `corral-engine-python`); `None`:
    /// such a model fails its load naming `corral serve`.
    pub python_engine: Option<Arc<dyn Engine>>,
    /// The engine a model's configuration names, by name (`corral_onnx::named_engine`);
    /// `None`: such a model fails its load.
    pub named_engine: Option<NamedEngine>,
    /// Publish live counters for `corral top` and `corral monitor` (on by default; off
    /// keeps them inside the process, and lets benchmarks measure what publishing costs).
    pub publish: bool,
    /// The autopilot (SPEC §11): on or off, else `CORRAL_AUTOPILOT` (off when unset).
    pub autopilot: Option<bool>,
    /// Its interval, else `CORRAL_AUTOPILOT_INTERVAL`, else 0.5 s.
    pub autopilot_interval: Option<Duration>,
}

/// Finds an engine by its name (`onnxruntime`, `openvino`, `tract`), or says why it cannot.
pub type NamedEngine = Arc<dyn Fn(&str) -> Result<Arc<dyn Engine>, String> + Send + Sync>;

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            take: TakeSettings::default(),
            exec_timeout: None,
            queue_len_max: 1024,
            run_max: corral_dispatch::runs::RUN_MAX,
            onnx_engine: None,
            python_engine: None,
            named_engine: None,
            publish: true,
            autopilot: None,
            autopilot_interval: None,
        }
    }
}

/// The execution timeout a `CORRAL_EXEC_TIMEOUT` value gives (the default when unset), as the
/// runtime reads it; a planner simulating the runtime reads it the same way.
pub fn exec_timeout_from(value: Option<String>) -> Result<Duration, SettingError> {
    let Some(value) = value else { return Ok(EXEC_TIMEOUT_DEFAULT) };
    let bad = |reason: &str| SettingError {
        name: EXEC_TIMEOUT_ENV,
        value: value.clone(),
        reason: reason.to_owned(),
        hint: "give seconds, e.g. 30 or 0.5",
    };
    let seconds: f64 = value.trim().parse().map_err(|_| bad("not a number of seconds"))?;
    if !(seconds > 0.0 && seconds.is_finite() && seconds < 1e9) {
        return Err(bad("must be more than 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Whether a `CORRAL_AUTOPILOT` value turns the autopilot on (off when unset).
pub fn autopilot_from(value: Option<String>) -> Result<bool, SettingError> {
    let Some(value) = value else { return Ok(false) };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" => Ok(true),
        "0" | "false" | "off" => Ok(false),
        _ => Err(SettingError {
            name: AUTOPILOT_ENV,
            value,
            reason: "is neither on nor off".to_owned(),
            hint: "use 1, true or on to turn the autopilot on; 0, false or off to leave it off",
        }),
    }
}

/// The interval a `CORRAL_AUTOPILOT_INTERVAL` value gives (the default when unset).
pub fn autopilot_interval_from(value: Option<String>) -> Result<Duration, SettingError> {
    let Some(value) = value else { return Ok(AUTOPILOT_INTERVAL_DEFAULT) };
    let (low, high) = AUTOPILOT_INTERVAL_RANGE;
    let bad = |reason: String| SettingError {
        name: AUTOPILOT_INTERVAL_ENV,
        value: value.clone(),
        reason,
        hint: "give seconds between 0.05 and 60, e.g. 0.5",
    };
    let seconds: f64 = value.trim().parse().map_err(|_| bad("not a number of seconds".to_owned()))?;
    if !(low..=high).contains(&seconds) {
        return Err(bad(format!("must be from {low} to {high} seconds")));
    }
    Ok(Duration::from_secs_f64(seconds))
}
