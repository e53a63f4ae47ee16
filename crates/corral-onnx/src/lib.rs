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
//! - `auto`, and unset (the default): each model on ONNX Runtime or OpenVINO, whichever runs
//!   it faster here, measured at its first instance ([`auto`]). With one library missing,
//!   every model runs on the other, with a one-line [`Choice::notice`] naming what to
//!   install; with neither, tract, with such a notice. The caller shows the notice (stderr,
//!   a Python warning).
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
        "" | "auto" => auto(&lookup),
        other => Err(OnnxEngineError::Unknown(other.to_owned())),
    }
}

/// `auto`: both engines when both load; else the one that does, with a notice; else tract.
fn auto(lookup: &impl Fn(&str) -> Option<String>) -> Result<Choice, OnnxEngineError> {
    let first_line = |error: &dyn std::fmt::Display| error.to_string().lines().next().unwrap_or_default().to_owned();
    Ok(match (ort(lookup), openvino(lookup)) {
        (Ok(ort), Ok(openvino)) => Choice { engine: Arc::new(auto::AutoEngine { ort, openvino }), notice: None },
        (Ok(ort), Err(error)) => Choice {
            engine: ort,
            notice: Some(format!(
                "every model runs on ONNX Runtime: {}; run ./scripts/setup or pip install openvino=={} to let each model run on the faster of the two",
                first_line(&error),
                corral_engine_openvino::VERSION
            )),
        },
        (Err(error), Ok(openvino)) => Choice {
            engine: openvino,
            notice: Some(format!(
                "every model runs on OpenVINO (models of more than one core and BYTES tensors cannot): {}; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime",
                first_line(&error)
            )),
        },
        (Err(error), Err(_)) => {
            let reason = first_line(&error);
            Choice {
                engine: tract().ok_or(OnnxEngineError::NoEngine(error))?,
                notice: Some(format!(
                    "using tract (pure Rust, 1.2x to 5x slower): {reason}; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime"
                )),
            }
        }
    })
}

/// Finds an engine by the name a model's configuration or `--engine` gives (`onnxruntime`,
/// `openvino`, `tract`; `auto`: as `CORRAL_ONNX_ENGINE=auto`),
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
        // As the process's `auto` (its notice, if any, was the process's to give).
        "auto" => auto(&lookup).map(|choice| choice.engine).map_err(|e| e.to_string()),
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
        let missing = |name: &str| match name {
            DYLIB_ENV => Some("/nonexistent/libonnxruntime.so".to_owned()),
            corral_engine_openvino::LIB_ENV => Some("/nonexistent/libopenvino_c.so".to_owned()),
            _ => None,
        };
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
