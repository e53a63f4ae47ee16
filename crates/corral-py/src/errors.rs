//! Runtime errors become the package's exception classes (defined in Python, in
//! `corral/_errors.py`, so that each is also the built-in a Python user would catch),
//! carrying the runtime's message verbatim.

use corral_cores::{AcquireError, TakeError};
use corral_runtime::{InferError, LoadError, RuntimeError};
use pyo3::{prelude::*, types::PyType};

/// An exception of class `class` (a name in `corral._errors`) with `message`.
pub(crate) fn raise(py: Python<'_>, class: &str, message: impl Into<String>) -> PyErr {
    let class = py.import("corral._errors").and_then(|m| m.getattr(class));
    match class.and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from)) {
        Ok(class) => PyErr::from_type(class, message.into()),
        Err(error) => error,
    }
}

pub(crate) fn runtime(py: Python<'_>, error: RuntimeError) -> PyErr {
    let class = match &error {
        RuntimeError::Take(TakeError::Acquire(AcquireError::Busy { .. } | AcquireError::AllocTimeout { .. })) => {
            "CoresBusyError"
        }
        RuntimeError::Take(TakeError::Registry(_) | TakeError::Acquire(AcquireError::Registry(_))) => "CorralError",
        _ => "ConfigError",
    };
    raise(py, class, error.to_string())
}

pub(crate) fn load(py: Python<'_>, error: LoadError) -> PyErr {
    let class = match &error {
        LoadError::Placement { .. } => "PlacementError",
        _ => "ModelLoadError",
    };
    raise(py, class, error.to_string())
}

pub(crate) fn infer(py: Python<'_>, error: InferError) -> PyErr {
    let class = match &error {
        InferError::Input { .. } => "InferenceError",
        InferError::Timeout { .. } => "ExecTimeoutError",
        InferError::QueueFull { .. } => "QueueFullError",
        InferError::Unloaded { .. } => "ModelUnloadedError",
        InferError::Engine { .. } | InferError::Internal(_) => "EngineError",
    };
    raise(py, class, error.to_string())
}
