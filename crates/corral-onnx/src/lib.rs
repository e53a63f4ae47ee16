//! Which engine runs ONNX models, decided once per process the same way for every front end
//! (the `corral` binary, `corral serve`, the Python package, any Rust embedder).
//!
//! `CORRAL_ONNX_ENGINE` = `onnxruntime` | `openvino` | `tract` | `auto` (the default):
//! - `onnxruntime` (or `ort`): ONNX Runtime, found as `corral_engine_ort::find_library` says
//!   (`ORT_DYLIB_PATH`, an installed `onnxruntime` Python package, the project's `.venv`);
//!   an error when it cannot be found.
//! - `openvino`: OpenVINO, found as `corral_engine_openvino::find_library` says
//!   (`OPENVINO_LIB_PATH`, an installed `openvino` Python package, the project's `.venv`);
//!   an error naming what to install when it cannot be found. Instances of one core only
//!   (see `corral_engine_openvino`).
//! - `tract`: the pure-Rust engine (1.2x to 5x slower, no library needed).
//! - `auto` set explicitly, with OpenVINO found: each model on ONNX Runtime or OpenVINO,
//!   whichever runs it faster here, measured at its first instance ([`auto`]).
//! - `auto` otherwise, and unset (the default): ONNX Runtime when found, else tract with a
//!   one-line [`Choice::notice`] saying how to get ONNX Runtime. The caller shows the notice
//!   (stderr, a Python warning).
//!
//! tract is the `tract` feature (on by default). A build without it (the demo's release
//! build, see ./scripts/setup) answers `tract` with an error saying how to get it, and `auto`
//! without ONNX Runtime with ONNX Runtime's own error.

pub mod auto;

use std::sync::Arc;

use corral_engine::Engine;
use corral_engine_openvino::{OpenVinoEngine, OvLoadError};
pub use corral_engine_ort::DYLIB_ENV;
use corral_engine_ort::{OrtEngine, OrtLoadError};
#[cfg(feature = "tract")]
use corral_engine_tract::TractEngine;

/// Chooses the ONNX engine.
pub const ONNX_ENGINE_ENV: &str = "CORRAL_ONNX_ENGINE";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OnnxEngineError {
    #[error("{ONNX_ENGINE_ENV}={0} is not an engine\nhint: use onnxruntime, openvino, tract or auto (the default)")]
    Unknown(String),
    #[error("{ONNX_ENGINE_ENV}=onnxruntime: {0}")]
    OrtMissing(#[source] OrtLoadError),
    #[error("{ONNX_ENGINE_ENV}=openvino: {0}")]
    OpenVinoMissing(#[source] OvLoadError),
    #[error(
        "{ONNX_ENGINE_ENV}=tract: this build of corral leaves tract out\nhint: build with the `tract` feature (the default; ./scripts/setup --tests builds it)"
    )]
    NoTract,
    #[error("{0}")]
    NoEngine(#[source] OrtLoadError),
}

/// tract, when this build has it.
fn tract() -> Option<Arc<dyn Engine>> {
    #[cfg(feature = "tract")]
    return Some(Arc::new(TractEngine::new()));
    #[cfg(not(feature = "tract"))]
    None
}

/// The engine chosen, and what the user should be told about the choice.
pub struct Choice {
    pub engine: Arc<dyn Engine>,
    /// Set when `auto` fell back to tract: one line, for stderr or a warning.
    pub notice: Option<String>,
}

/// The ONNX engine that `lookup` (the environment, or a caller's view of it) asks for.
pub fn onnx_engine(lookup: impl Fn(&str) -> Option<String>) -> Result<Choice, OnnxEngineError> {
    let wanted = lookup(ONNX_ENGINE_ENV).unwrap_or_default();
    let chosen = |engine: Arc<dyn Engine>| Choice { engine, notice: None };
    match wanted.trim() {
        "tract" => Ok(chosen(tract().ok_or(OnnxEngineError::NoTract)?)),
        "onnxruntime" | "ort" => Ok(chosen(ort(lookup).map_err(OnnxEngineError::OrtMissing)?)),
        "openvino" => Ok(chosen(openvino(lookup).map_err(OnnxEngineError::OpenVinoMissing)?)),
        // Set explicitly, `auto` measures both engines per model (see `auto`); unset, it is
        // ONNX Runtime when found, until the tests that are not about the choice name theirs.
        "auto" if openvino(&lookup).is_ok() => {
            let engines =
                ort(&lookup).map(|ort| auto::AutoEngine { ort, openvino: openvino(&lookup).expect("loaded") });
            Ok(chosen(Arc::new(engines.map_err(OnnxEngineError::OrtMissing)?)))
        }
        "" | "auto" => Ok(match ort(lookup) {
            Ok(engine) => chosen(engine),
            Err(error) => {
                let reason = error.to_string();
                let reason = reason.lines().next().unwrap_or_default().to_owned();
                Choice {
                    engine: tract().ok_or(OnnxEngineError::NoEngine(error))?,
                    notice: Some(format!(
                        "using tract (pure Rust, 1.2x to 5x slower): {reason}; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime"
                    )),
                }
            }
        }),
        other => Err(OnnxEngineError::Unknown(other.to_owned())),
    }
}

/// Finds an engine by the name a model's configuration or `--engine` gives (`onnxruntime`,
/// `openvino`, `tract`; `auto`: measured per model when OpenVINO loads, else ONNX Runtime),
/// each loaded once per process, its error in words when it cannot be had: what a
/// runtime's `RuntimeSettings::named_engine` holds. The libraries' variables are read from
/// `lookup` now.
#[allow(clippy::type_complexity)]
pub fn named_engine(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Arc<dyn Fn(&str) -> Result<Arc<dyn Engine>, String> + Send + Sync> {
    let variables: Vec<(&str, Option<String>)> =
        [DYLIB_ENV, corral_engine_openvino::LIB_ENV].into_iter().map(|name| (name, lookup(name))).collect();
    let lookup = move |name: &str| variables.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone());
    Arc::new(move |name: &str| match name {
        "onnxruntime" => ort(&lookup).map_err(|e| format!("the engine onnxruntime: {e}")),
        "openvino" => openvino(&lookup).map_err(|e| format!("the engine openvino: {e}")),
        "tract" => tract().ok_or_else(|| OnnxEngineError::NoTract.to_string()),
        // Measured per model when OpenVINO loads, else ONNX Runtime.
        "auto" => {
            let ort = ort(&lookup).map_err(|e| format!("the engine onnxruntime: {e}"))?;
            Ok(match openvino(&lookup) {
                Ok(openvino) => Arc::new(auto::AutoEngine { ort, openvino }),
                Err(_) => ort,
            })
        }
        other => Err(format!("`{other}` is not an engine; use onnxruntime, openvino, tract or auto")),
    })
}

fn openvino(lookup: impl Fn(&str) -> Option<String>) -> Result<Arc<dyn Engine>, OvLoadError> {
    let engine = OpenVinoEngine::load(lookup)?;
    tracing::info!(library = %engine.library().display(), "OpenVINO");
    Ok(Arc::new(engine))
}

fn ort(lookup: impl Fn(&str) -> Option<String>) -> Result<Arc<dyn Engine>, OrtLoadError> {
    let engine = OrtEngine::load(lookup)?;
    tracing::info!(library = %engine.library().display(), "ONNX Runtime");
    Ok(Arc::new(engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_engine_is_named() {
        let lookup = |name: &str| (name == ONNX_ENGINE_ENV).then(|| "tensorrt".to_owned());
        let error = onnx_engine(lookup).err().expect("tensorrt is not an engine");
        assert_eq!(
            error.to_string(),
            "CORRAL_ONNX_ENGINE=tensorrt is not an engine\nhint: use onnxruntime, openvino, tract or auto (the default)"
        );
    }

    #[cfg(not(feature = "tract"))]
    #[test]
    fn a_build_without_tract_says_how_to_get_an_engine() {
        let tract = |name: &str| (name == ONNX_ENGINE_ENV).then(|| "tract".to_owned());
        assert_eq!(
            onnx_engine(tract).err().expect("no tract").to_string(),
            "CORRAL_ONNX_ENGINE=tract: this build of corral leaves tract out\nhint: build with the `tract` feature (the default; ./scripts/setup --tests builds it)"
        );
        let missing = |name: &str| (name == DYLIB_ENV).then(|| "/nonexistent/libonnxruntime.so".to_owned());
        let error = onnx_engine(missing).err().expect("no engine at all").to_string();
        assert!(error.starts_with("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not name a file"), "{error}");
    }

    #[cfg(feature = "tract")]
    #[test]
    fn tract_needs_no_library() {
        let lookup = |name: &str| (name == ONNX_ENGINE_ENV).then(|| " tract ".to_owned());
        let choice = onnx_engine(lookup).expect("tract is built in");
        assert_eq!(choice.engine.name(), "tract");
        assert!(choice.notice.is_none());
    }
}
