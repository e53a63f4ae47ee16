//! Model repositories in Triton's layout: `REPO/<name>/<version>/model.onnx` (the highest
//! numeric version) with corral's `config.toml` or Triton's `config.pbtxt` beside the
//! versions. A single `.onnx` file is accepted wherever a repository is. The runtime, the
//! server and the Python package all read model folders here, so a folder means the same
//! thing to each.
//!
//! ```toml
//! platform = "onnx"        # or "sim"
//! cores = 2                # K, cores per instance (default 1)
//! [placement]
//! start = 0                # start_nc
//! count = 4                # nc_count, or "all" for multicore
//! # group = 1             # legacy group index instead
//! elastic = true           # single-core replicas may run a lone call on all their cores
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
//! From `config.pbtxt` (protobuf text, [`pbtxt`]) this module reads what places and finds the
//! model: `platform`/`backend` (ONNX only), `default_model_filename`, `instance_group`
//! (`count` replicas of K cores each) and `parameters` with keys `corral.cores` (K),
//! `corral.start`, `corral.count` (a number or `all`), `corral.group` and `corral.elastic`
//! (`true` or `false`). The server reads
//! Triton's serving fields (batching, declared tensors) from the same parsed file. When both
//! files exist, the model and its placement come from `config.toml`.
//!
//! A bad model gets an error naming its file and what is wrong; the other models still load.

pub mod pbtxt;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use corral_engine::{DataType, ModelSource, SimModel, TensorSpec};
use corral_placement::Where;
use serde::Deserialize;

use self::pbtxt::{Message, Value, number};
use crate::runtime::ModelDef;

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
    #[serde(default)]
    elastic: bool,
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

/// One model folder as read: what the runtime loads, and the folder's parsed `config.pbtxt`
/// when it has one (the server reads Triton's serving fields from it).
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub def: ModelDef,
    pub pbtxt: Option<Message>,
}

/// Reads one model folder; `Ok(None)` for a folder that holds no model at all.
pub fn read_model(dir: &Path) -> Result<Option<ModelDef>, RepositoryError> {
    Ok(read_folder(dir)?.map(|folder| folder.def))
}

/// Reads one model folder with its `config.pbtxt`; `Ok(None)` for a folder that holds no model.
pub fn read_folder(dir: &Path) -> Result<Option<ModelFolder>, RepositoryError> {
    let pbtxt_path = dir.join("config.pbtxt");
    let bad = |reason: String| RepositoryError::Model { path: pbtxt_path.clone(), reason };
    let pbtxt = match std::fs::read_to_string(&pbtxt_path) {
        Ok(text) => Some(pbtxt::parse(&text).map_err(|e| bad(e.to_string()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(bad(e.to_string())),
    };
    read_folder_as(dir, pbtxt, true)
}

/// Reads one model folder as `config` (a Triton model configuration given at load time, in
/// place of its `config.pbtxt`; its `config.toml`, if any, is not read either).
pub fn read_folder_with(dir: &Path, config: Message) -> Result<ModelFolder, RepositoryError> {
    let folder = read_folder_as(dir, Some(config), false)?;
    folder.ok_or_else(|| RepositoryError::Model { path: dir.to_owned(), reason: "no model file".to_owned() })
}

fn read_folder_as(dir: &Path, pbtxt: Option<Message>, toml_too: bool) -> Result<Option<ModelFolder>, RepositoryError> {
    let pbtxt_path = dir.join("config.pbtxt");
    let bad = |reason: String| RepositoryError::Model { path: pbtxt_path.clone(), reason };
    let def = match &pbtxt {
        Some(config) => {
            let file = pbtxt_model_file(config).map_err(bad)?;
            if toml_too && dir.join("config.toml").is_file() {
                read_toml_model(dir)?.ok_or_else(|| bad("no model file".to_owned()))?
            } else {
                pbtxt_model(dir, config, &file).map_err(bad)?
            }
        }
        None => match read_toml_model(dir)? {
            Some(def) => def,
            None => return Ok(None),
        },
    };
    Ok(Some(ModelFolder { def, pbtxt }))
}

/// The model file a `config.pbtxt` names (`default_model_filename`, else `model.onnx`), after
/// checking that its platform is one corral runs.
fn pbtxt_model_file(config: &Message) -> Result<String, String> {
    let platform = config.text("platform").unwrap_or_default();
    let backend = config.text("backend").unwrap_or_default();
    let onnx = matches!(platform, "onnxruntime_onnx" | "onnx" | "") && matches!(backend, "onnxruntime" | "onnx" | "");
    if !onnx {
        return Err(format!(
            "platform `{platform}` / backend `{backend}` is not served by corral; use platform \"onnxruntime_onnx\" or backend \"onnxruntime\""
        ));
    }
    let file = config.text("default_model_filename").unwrap_or("model.onnx").to_owned();
    if file.contains('/') || file.starts_with('.') {
        return Err(format!("default_model_filename `{file}` must be a plain file name"));
    }
    Ok(file)
}

fn pbtxt_model(dir: &Path, config: &Message, file: &str) -> Result<ModelDef, String> {
    let path =
        latest_version(dir, file).ok_or_else(|| format!("no <version>/{file} found next to it (e.g. 1/{file})"))?;
    let k = config.parameter("corral.cores").map(|v| number(v, "corral.cores")).transpose()?.unwrap_or(1);
    if k < 1 {
        return Err(format!("corral.cores = {k}: a model needs at least 1 core per instance"));
    }
    let k = k as usize;
    let replicas = pbtxt_replicas(config)?;
    let placement = pbtxt_placement(config, k, replicas)?;
    let name = dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let elastic = match config.parameter("corral.elastic") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("corral.elastic = `{other}` is not valid; use \"true\" or \"false\"")),
    };
    Ok(ModelDef { name, source: ModelSource::Onnx(path), cores_per_instance: k, placement, elastic })
}

/// The replicas `instance_group { count }` asks for, summed over groups.
fn pbtxt_replicas(config: &Message) -> Result<Option<usize>, String> {
    let mut total = None;
    for group in config.all("instance_group") {
        let Value::Message(group) = group else { return Err("instance_group must be a message".to_owned()) };
        let count = group.text("count").map(|c| number(c, "instance_group count")).transpose()?.unwrap_or(1);
        if count < 1 {
            return Err(format!("instance_group count {count} is not valid; use 1 or more"));
        }
        if let Some(kind) = group.text("kind")
            && !matches!(kind, "KIND_CPU" | "KIND_AUTO" | "KIND_MODEL")
        {
            return Err(format!("instance_group kind {kind} is not served by corral; use KIND_CPU"));
        }
        *total.get_or_insert(0) += count as usize;
    }
    Ok(total)
}

fn pbtxt_placement(config: &Message, k: usize, replicas: Option<usize>) -> Result<Option<Where>, String> {
    let start = config.parameter("corral.start").map(|s| number(s, "corral.start")).transpose()?;
    let count = config.parameter("corral.count");
    let group = config.parameter("corral.group").map(|s| number(s, "corral.group")).transpose()?;
    if group.is_some() && (start.is_some() || count.is_some()) {
        return Err("corral.group cannot be combined with corral.start or corral.count".to_owned());
    }
    if let Some(group) = group {
        return Ok(Some(Where::Group(group.max(0) as usize)));
    }
    let count = match count {
        Some("all") if start.is_none() => return Ok(Some(Where::Multicore)),
        Some("all") => return Err("corral.count = all cannot be combined with corral.start".to_owned()),
        Some(text) => Some(number(text, "corral.count")?),
        // instance_group count N: N replicas of K cores each.
        None => replicas.map(|n| (n * k) as i64),
    };
    if start.is_some_and(|s| s < 0) || count.is_some_and(|c| c < 1) {
        return Err("corral.start must be 0 or more and corral.count 1 or more".to_owned());
    }
    Ok(match (start, count) {
        (None, None) => None,
        (start, count) => Some(Where::Cores { start: start.map(|s| s as usize), count: count.map(|c| c as usize) }),
    })
}

/// A folder read by its `config.toml` (or by its `<version>/model.onnx` alone).
fn read_toml_model(dir: &Path) -> Result<Option<ModelDef>, RepositoryError> {
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
    Ok(Some(ModelDef { name, source, cores_per_instance: k, placement, elastic: config.placement.elastic }))
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
