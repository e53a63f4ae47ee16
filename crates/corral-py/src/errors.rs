//! Runtime errors become the package's exception classes (defined in Python, in
//! `corral/_errors.py`, so that each is also the built-in a Python user would catch),
//! carrying the runtime's message verbatim.

use corral_cores::{AcquireError, TakeError};
use corral_runtime::{InferError, LoadError, RuntimeError};
use pyo3::prelude::*;

// The package's exception classes, defined in Python (`corral/_errors.py`) so that each is
// also the built-in a Python user would catch; pyo3 imports each class once and caches it.
pyo3::import_exception!(corral._errors, CorralError);
pyo3::import_exception!(corral._errors, ConfigError);
pyo3::import_exception!(corral._errors, CoresBusyError);
pyo3::import_exception!(corral._errors, PlacementError);
pyo3::import_exception!(corral._errors, ModelLoadError);
pyo3::import_exception!(corral._errors, InferenceError);
pyo3::import_exception!(corral._errors, ExecTimeoutError);
pyo3::import_exception!(corral._errors, QueueFullError);
pyo3::import_exception!(corral._errors, EngineError);
pyo3::import_exception!(corral._errors, ModelUnloadedError);
pyo3::import_exception!(corral._errors, ForkError);

pub(crate) fn runtime(error: RuntimeError) -> PyErr {
    let message = error.to_string();
    match &error {
        RuntimeError::Take(TakeError::Acquire(AcquireError::Busy { .. } | AcquireError::AllocTimeout { .. })) => {
            CoresBusyError::new_err(message)
        }
        RuntimeError::Take(TakeError::Registry(_) | TakeError::Acquire(AcquireError::Registry(_))) => {
            CorralError::new_err(message)
        }
        _ => ConfigError::new_err(message),
    }
}

pub(crate) fn load(error: LoadError) -> PyErr {
    let message = error.to_string();
    match &error {
        LoadError::Placement { .. } => PlacementError::new_err(message),
        _ => ModelLoadError::new_err(message),
    }
}

pub(crate) fn infer(error: InferError) -> PyErr {
    let message = error.to_string();
    match &error {
        InferError::Input { .. } => InferenceError::new_err(message),
        InferError::Timeout { .. } => ExecTimeoutError::new_err(message),
        InferError::QueueFull { .. } => QueueFullError::new_err(message),
        InferError::Unloaded { .. } => ModelUnloadedError::new_err(message),
        InferError::Engine { .. } | InferError::Internal(_) => EngineError::new_err(message),
    }
}
