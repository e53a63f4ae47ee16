//! Shared by `plan`, `bench` and `demo`: reading a repository (reporting bad models and going
//! on with the rest) and starting a runtime with the ONNX engine chosen (ONNX Runtime, else
//! tract).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use corral_runtime::{ModelDef, Runtime, RuntimeSettings, repository};

use crate::{
    cli::{CoreArgs, DeviceArg},
    settings::take_settings,
};

/// The models of `path`; each bad one is reported on stderr and skipped.
pub fn read(path: &Path) -> anyhow::Result<Vec<ModelDef>> {
    let (models, errors) = repository::read(path)?;
    for error in &errors {
        eprintln!("warning: skipping a model: {error}");
    }
    if models.is_empty() {
        anyhow::bail!("{} holds no model that can be loaded", path.display());
    }
    Ok(models)
}

/// Chooses the ONNX engine: `CORRAL_ONNX_ENGINE` = `onnxruntime` | `tract` | `auto` (the
/// default: ONNX Runtime when it can be found, else tract with a one-line notice).
pub const ONNX_ENGINE_ENV: &str = "CORRAL_ONNX_ENGINE";

/// The ONNX engine the environment asks for, by the rules of [`ONNX_ENGINE_ENV`].
pub fn onnx_engine(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Arc<dyn corral_engine::Engine>> {
    let wanted = lookup(ONNX_ENGINE_ENV).unwrap_or_default();
    let tract = || Arc::new(corral_engine_tract::TractEngine::new()) as Arc<dyn corral_engine::Engine>;
    match wanted.trim() {
        "tract" => Ok(tract()),
        "onnxruntime" | "ort" => {
            let engine = corral_engine_ort::OrtEngine::load(lookup).context("CORRAL_ONNX_ENGINE=onnxruntime")?;
            tracing::info!(library = %engine.library().display(), "ONNX Runtime");
            Ok(Arc::new(engine))
        }
        "" | "auto" => match corral_engine_ort::OrtEngine::load(lookup) {
            Ok(engine) => {
                tracing::info!(library = %engine.library().display(), "ONNX Runtime");
                Ok(Arc::new(engine))
            }
            Err(error) => {
                let first = error.to_string();
                let first = first.lines().next().unwrap_or_default();
                eprintln!(
                    "notice: using tract (pure Rust, 1.2x to 5x slower): {first}; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime"
                );
                Ok(tract())
            }
        },
        other => anyhow::bail!(
            "{ONNX_ENGINE_ENV}={other} is not an engine\nhint: use onnxruntime, tract or auto (the default)"
        ),
    }
}

/// A runtime on the cores the flags and environment ask for, with the ONNX engine
/// [`onnx_engine`] picks.
pub fn runtime(
    device: &DeviceArg,
    cores: Option<&CoreArgs>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Runtime> {
    let onnx_engine = Some(onnx_engine(lookup)?);
    let settings = RuntimeSettings { take: take_settings(device, cores), onnx_engine, ..RuntimeSettings::default() };
    Runtime::new(settings).context("cannot start the runtime")
}
