//! How a runtime is set up: its settings and the environment values it reads itself.

use std::{sync::Arc, time::Duration};

use corral_cores::TakeSettings;
use corral_engine::Engine;

/// `CORRAL_EXEC_TIMEOUT`: seconds a call may wait to start before failing.
pub const EXEC_TIMEOUT_ENV: &str = "CORRAL_EXEC_TIMEOUT";
pub const EXEC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

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
    /// The engine for ONNX models (ONNX Runtime or tract), chosen by the caller.
    pub onnx_engine: Option<Arc<dyn Engine>>,
    /// Publish live counters for `corral top` and `corral monitor` (on by default; off
    /// keeps them inside the process, and lets benchmarks measure what publishing costs).
    pub publish: bool,
}

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            take: TakeSettings::default(),
            exec_timeout: None,
            queue_len_max: 1024,
            run_max: 8,
            onnx_engine: None,
            publish: true,
        }
    }
}
