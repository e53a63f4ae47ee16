//! Shared by `plan`, `bench` and `demo`: reading a repository (reporting bad models and going
//! on with the rest) and starting a runtime with the best ONNX engine available.

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

/// A runtime on the cores the flags and environment ask for, with ONNX Runtime when it can
/// be found (a one-line notice otherwise: ONNX models will then fail to load, each clearly).
pub fn runtime(
    device: &DeviceArg,
    cores: Option<&CoreArgs>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Runtime> {
    let onnx_engine: Option<Arc<dyn corral_engine::Engine>> = match corral_engine_ort::OrtEngine::load(lookup) {
        Ok(engine) => {
            tracing::info!(library = %engine.library().display(), "ONNX Runtime");
            Some(Arc::new(engine))
        }
        Err(error) => {
            eprintln!("notice: {error}");
            None
        }
    };
    let settings = RuntimeSettings { take: take_settings(device, cores), onnx_engine, ..RuntimeSettings::default() };
    Runtime::new(settings).context("cannot start the runtime")
}
