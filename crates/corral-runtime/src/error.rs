//! The runtime's errors: starting it, loading a model, and one call.

use std::time::Duration;

use corral_cores::TakeError;
use corral_engine::{EngineError, InputError};
use corral_placement::PlacementError;

use crate::settings::{EXEC_TIMEOUT_ENV, SettingError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Take(#[from] TakeError),
    #[error(transparent)]
    Setting(#[from] SettingError),
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("a model named `{name}` is already loaded\nhint: unload it first, or load under another name")]
    Exists { name: String },
    #[error("no model named `{name}` is loaded")]
    NotFound { name: String },
    #[error("cannot place `{model}`: {source}")]
    Placement {
        model: String,
        #[source]
        source: PlacementError,
    },
    #[error("cannot load `{model}`: {source}")]
    Engine {
        model: String,
        #[source]
        source: EngineError,
    },
    #[error(
        "cannot load `{model}`: no ONNX engine is available\nhint: run ./scripts/setup, which installs ONNX Runtime"
    )]
    NoOnnxEngine { model: String },
    #[error(
        "cannot load `{model}`: it is a Triton Python model (model.py), which runs under `corral serve` and `corral bench`\nhint: serve its repository with corral serve"
    )]
    NoPythonEngine { model: String },
    #[error("cannot load `{model}`: {reason}")]
    EngineChoice { model: String, reason: String },
    #[error("cannot start a worker thread for `{model}`")]
    Thread {
        model: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot load `{model}`: {reason}\nhint: give the autopilot's bounds as whole numbers of instances with 1 <= min <= max"
    )]
    Bounds { model: String, reason: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error("model `{model}`: {source}")]
    Input {
        model: String,
        #[source]
        source: InputError,
    },
    #[error(
        "model `{model}` could not start within {} s: its cores stayed busy\nhint: raise {EXEC_TIMEOUT_ENV}, add replicas, or move models that share its cores",
        waited.as_secs_f64()
    )]
    Timeout { model: String, waited: Duration },
    #[error("model `{model}` is not loaded")]
    Unloaded { model: String },
    #[error(
        "model `{model}` has {queue_len_max} calls waiting on its least busy replica; this call was refused\nhint: retry later, or add replicas"
    )]
    QueueFull { model: String, queue_len_max: usize },
    #[error("model `{model}`: {source}")]
    Engine {
        model: String,
        #[source]
        source: EngineError,
    },
    #[error("{0}")]
    Internal(String),
}
