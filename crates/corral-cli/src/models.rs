//! Shared by `plan`, `bench`, `demo` and `serve`: reading a repository (reporting bad models
//! and going on with the rest) and starting a runtime with the ONNX engine `corral-onnx`
//! chooses (ONNX Runtime, else tract).

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

/// `def` on `engine` (`--engine`), which wins over its configuration's, when given; for ONNX
/// models only (a simulated model has its own engine).
pub fn with_engine(def: ModelDef, engine: Option<&str>) -> ModelDef {
    match (engine, &def.source) {
        (Some(engine), corral_engine::ModelSource::Onnx(_)) => ModelDef { engine: Some(engine.to_owned()), ..def },
        _ => def,
    }
}

/// The ONNX engine `corral_onnx` chooses from the environment; its notice goes to stderr.
pub fn onnx_engine(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Arc<dyn corral_engine::Engine>> {
    let choice = corral_onnx::onnx_engine(lookup)?;
    if let Some(notice) = choice.notice {
        eprintln!("notice: {notice}");
    }
    Ok(choice.engine)
}

/// A runtime on the cores the flags and environment ask for, with the ONNX engine
/// [`onnx_engine`] picks; `--autopilot` (`autopilot`) turns the autopilot on, else
/// `CORRAL_AUTOPILOT` decides.
pub fn runtime(
    device: &DeviceArg,
    cores: Option<&CoreArgs>,
    autopilot: bool,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Runtime> {
    let onnx_engine = Some(onnx_engine(lookup)?);
    let settings = RuntimeSettings {
        take: take_settings(device, cores),
        onnx_engine,
        python_engine: Some(Arc::new(corral_engine_python::PythonEngine::from_env(lookup))),
        named_engine: Some(corral_onnx::named_engine(lookup)),
        autopilot: autopilot.then_some(true),
        ..RuntimeSettings::default()
    };
    Runtime::new(settings).context("cannot start the runtime")
}
