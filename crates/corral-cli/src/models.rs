//! Shared by `plan`, `bench` and `demo`: reading a repository (reporting bad models and going
//! on with the rest), starting a runtime with the best ONNX engine available, and making
//! deterministic inputs for a model.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use corral_engine::{DataType, Tensor, TensorData, TensorSpec};
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

/// Deterministic, non-trivial inputs shaped like `specs` (dynamic dimensions become 1).
pub fn inputs(specs: &[TensorSpec]) -> Vec<Tensor> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec.shape.iter().map(|&d| if d < 0 { 1 } else { d as usize }).collect();
            let len: usize = shape.iter().product();
            let wave = |i: usize| ((i * 7919) % 1000) as f64 / 1000.0;
            let data = match spec.datatype {
                DataType::F32 => TensorData::F32((0..len).map(|i| wave(i) as f32).collect()),
                DataType::F64 => TensorData::F64((0..len).map(wave).collect()),
                DataType::I64 => TensorData::I64((0..len).map(|i| (i % 256) as i64).collect()),
                DataType::I32 => TensorData::I32((0..len).map(|i| (i % 256) as i32).collect()),
                other => TensorData::zeros(other, len),
            };
            Tensor::new(spec.name.clone(), shape, data)
        })
        .collect()
}
