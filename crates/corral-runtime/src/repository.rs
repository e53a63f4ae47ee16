//! Model repositories in Triton's layout with corral's `config.toml`:
//! `REPO/<name>/config.toml` and `REPO/<name>/<version>/model.onnx` (the highest numeric
//! version). A single `.onnx` file is accepted wherever a repository is.
//!
//! ```toml
//! platform = "onnx"        # or "sim"
//! cores = 2                # K, cores per instance (default 1)
//! [placement]
//! start = 0                # start_nc
//! count = 4                # nc_count, or "all" for multicore
//! # group = 1             # legacy group index instead
//! [sim]
//! latency_ms = 10.0
//! switch_ms = 2.0
//! [[input]]
//! name = "x"
//! datatype = "FP32"
//! shape = [1, 3, 224, 224]   # required for sim, optional for onnx
//! [[output]]
//! name = "y"
//! datatype = "FP32"
//! shape = [1, 1000]
//! ```
//!
//! A bad model gets an error naming its file and what is wrong; the other models still load.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use corral_engine::{DataType, ModelSource, SimModel, TensorSpec};
use corral_placement::Where;
use serde::Deserialize;

use crate::ModelDef;

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("cannot read the model repository {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    platform: Option<String>,
    cores: Option<usize>,
    #[serde(default)]
    placement: PlacementConfig,
    sim: Option<SimConfig>,
    #[serde(default)]
    input: Vec<TensorConfig>,
    #[serde(default)]
    output: Vec<TensorConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementConfig {
    start: Option<usize>,
    count: Option<Count>,
    group: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Count {
    N(usize),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimConfig {
    latency_ms: f64,
    #[serde(default)]
    switch_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorConfig {
    name: String,
    datatype: String,
    shape: Option<Vec<i64>>,
}

/// Reads every model of `path` (a repository folder or one `.onnx` file). Each model that
/// cannot be read gives an error; the others are returned.
pub fn read(path: &Path) -> Result<(Vec<ModelDef>, Vec<RepositoryError>), RepositoryError> {
    if path.is_file() {
        if path.extension().is_none_or(|e| e != "onnx") {
            return Err(RepositoryError::Model {
                path: path.to_owned(),
                reason: "is neither a .onnx model nor a repository folder".to_owned(),
            });
        }
        let name = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
        return Ok((vec![ModelDef::onnx(name, path)], Vec::new()));
    }
    let entries = std::fs::read_dir(path).map_err(|source| RepositoryError::Read { path: path.to_owned(), source })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let (mut models, mut errors) = (Vec::new(), Vec::new());
    for dir in dirs {
        match read_model(&dir) {
            Ok(Some(model)) => models.push(model),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    Ok((models, errors))
}

/// Reads one model folder; `Ok(None)` for a folder that holds no model at all.
pub fn read_model(dir: &Path) -> Result<Option<ModelDef>, RepositoryError> {
    let name = dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let config_path = dir.join("config.toml");
    let bad = |path: &Path, reason: String| RepositoryError::Model { path: path.to_owned(), reason };
    let config: Config = match std::fs::read_to_string(&config_path) {
        Ok(text) => toml::from_str(&text).map_err(|e| bad(&config_path, e.message().to_owned()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
        Err(e) => return Err(bad(&config_path, e.to_string())),
    };
    let k = config.cores.unwrap_or(1);
    if k == 0 {
        return Err(bad(&config_path, "cores = 0: a model needs at least 1 core per instance".to_owned()));
    }
    let placement = placement(&config.placement).map_err(|reason| bad(&config_path, reason))?;
    let tensors = |list: &[TensorConfig], what: &str| -> Result<Vec<TensorSpec>, RepositoryError> {
        list.iter()
            .map(|t| {
                let datatype: DataType =
                    t.datatype.parse().map_err(|e| bad(&config_path, format!("{what} `{}`: {e}", t.name)))?;
                Ok(TensorSpec::new(t.name.clone(), datatype, t.shape.clone().unwrap_or_default()))
            })
            .collect()
    };
    let platform = config.platform.as_deref().unwrap_or("onnx");
    let source = match platform {
        "sim" => {
            let sim = config.sim.as_ref().ok_or_else(|| {
                bad(&config_path, "platform = \"sim\" needs a [sim] table with latency_ms".to_owned())
            })?;
            if config
                .output
                .iter()
                .chain(&config.input)
                .any(|t| t.shape.as_ref().is_none_or(|s| s.iter().any(|&d| d < 0)))
            {
                return Err(bad(
                    &config_path,
                    "every [[input]] and [[output]] of a sim model needs a fixed shape".to_owned(),
                ));
            }
            if !(sim.latency_ms >= 0.0
                && sim.switch_ms >= 0.0
                && sim.latency_ms.is_finite()
                && sim.switch_ms.is_finite())
            {
                return Err(bad(&config_path, "latency_ms and switch_ms must be 0 or more".to_owned()));
            }
            ModelSource::Sim(SimModel {
                inputs: tensors(&config.input, "input")?,
                outputs: tensors(&config.output, "output")?,
                latency: Duration::from_secs_f64(sim.latency_ms / 1e3),
                switch: Duration::from_secs_f64(sim.switch_ms / 1e3),
            })
        }
        "onnx" | "onnxruntime_onnx" => {
            let Some(file) = latest_version(dir, "model.onnx") else {
                if config_path.exists() {
                    return Err(bad(dir, "no <version>/model.onnx found (e.g. 1/model.onnx)".to_owned()));
                }
                return Ok(None);
            };
            ModelSource::Onnx(file)
        }
        other => {
            return Err(bad(&config_path, format!("platform `{other}` is not supported; use \"onnx\" or \"sim\"")));
        }
    };
    Ok(Some(ModelDef { name, source, cores_per_instance: k, placement }))
}

fn placement(config: &PlacementConfig) -> Result<Option<Where>, String> {
    let multicore = match &config.count {
        Some(Count::Word(word)) if word == "all" => true,
        Some(Count::Word(word)) => {
            return Err(format!("placement count `{word}` is not valid; use a number or \"all\""));
        }
        _ => false,
    };
    let count = match config.count {
        Some(Count::N(0)) => return Err("placement count 0 is not valid; use 1 or more, or \"all\"".to_owned()),
        Some(Count::N(n)) => Some(n),
        _ => None,
    };
    Ok(match (config.group, multicore, config.start, count) {
        (Some(_), _, Some(_), _) | (Some(_), true, _, _) | (Some(_), _, _, Some(_)) => {
            return Err("placement group cannot be combined with start or count".to_owned());
        }
        (Some(group), ..) => Some(Where::Group(group)),
        (None, true, Some(_), _) => return Err("placement count = \"all\" cannot be combined with start".to_owned()),
        (None, true, None, _) => Some(Where::Multicore),
        (None, false, None, None) => None,
        (None, false, start, count) => Some(Where::Cores { start, count }),
    })
}

/// `<dir>/<highest numeric version>/<file>`.
pub fn latest_version(dir: &Path, file: &str) -> Option<PathBuf> {
    let versions = std::fs::read_dir(dir).ok()?;
    versions
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u64>().ok()).map(|v| (v, e.path().join(file))))
        .filter(|(_, path)| path.is_file())
        .max_by_key(|(v, _)| *v)
        .map(|(_, path)| path)
}
