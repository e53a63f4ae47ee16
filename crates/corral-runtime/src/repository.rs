//! Model repositories in Triton's layout: `REPO/<name>/<version>/model.onnx` with corral's
//! `config.toml` or Triton's `config.pbtxt` beside the versions. A single `.onnx` file is
//! accepted wherever a repository is. The runtime, the server and the Python package all read
//! model folders here, so a folder means the same thing to each.
//!
//! Versions follow Triton's `version_policy` (SPEC §8): the numeric folders of the model that
//! the policy selects, the latest one by default ([`VersionPolicy`]). `corral serve` loads
//! every selected version as a model of its own; `plan`, `bench`, `demo` and Python, which
//! place and call one model per folder, take the highest selected version. A simulated model
//! has no version folders and is version 1.
//!
//! ```toml
//! platform = "onnx"        # or "openvino" (IR: model.xml beside model.bin), or "sim"
//! engine = "openvino"      # onnxruntime, openvino, tract, or auto (the process's choice)
//! cores = 2                # K, cores per instance (default 1)
//! [placement]
//! start = 0                # start_nc
//! count = 4                # nc_count, or "all" for multicore
//! # group = 1             # legacy group index instead
//! # starts = [0, 14]      # or one instance at each of these cores (plan --optimize --write)
//! elastic = true           # single-core replicas may run a lone call on all their cores
//! [autopilot]              # the autopilot's bounds, in instances (SPEC §11)
//! min = 1
//! max = 8
//! [versions]               # Triton's version_policy; default: the latest 1
//! policy = "latest"        # or "all", or "specific"
//! latest = 2               # with "latest": how many of the highest versions
//! # specific = [1, 3]      # with "specific": exactly these versions
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
//! `config.pbtxt` is read by `corral-config` (protobuf text format against Triton's
//! `ModelConfig` schema, as Triton reads it: an unknown field or a value of the wrong type
//! fails the load with protobuf's message, line and column). From the typed message this
//! module reads what places and finds the model: `platform`/`backend` (ONNX on `onnxruntime`,
//! IR or ONNX on `openvino`, whose model file is `model.xml` unless `default_model_filename`
//! says otherwise, as Triton's OpenVINO backend reads it), `default_model_filename`, `instance_group`
//! (`count` replicas of K cores each) and `parameters` with keys `corral.cores` (K),
//! `corral.start`, `corral.count` (a number or `all`), `corral.group`, `corral.starts` (start
//! cores separated by commas: one instance at each), `corral.elastic`,
//! `corral.autopilot.min` / `corral.autopilot.max`, `corral.plan.rate`, `corral.engine` (as
//! `engine` in `config.toml`: it wins over the backend's engine), and `version_policy`
//! (`latest { num_versions }`, `all {}`, `specific { versions }`). An `instance_group` whose
//! `count` is left out (or 0) has 1 instance: Triton's default on CPU is 2, but each corral
//! instance owns cores, so one is asked for unless more are. The server reads Triton's serving
//! fields (batching, declared tensors) from the same message. When both
//! files exist, the model and its placement come from `config.toml`.
//!
//! A bad model gets an error naming its file and what is wrong; the other models still load.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use corral_config::{ModelConfig, model_instance_group::Kind as GroupKind, model_version_policy::PolicyChoice};
use corral_engine::{DataType, ModelSource, PythonModel, SimModel, TensorSpec};
use corral_placement::Where;
use serde::Deserialize;

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
    /// A `config.pbtxt` that is not Triton's `ModelConfig`, in Triton's words.
    #[error(transparent)]
    Config(#[from] corral_config::ReadError),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    platform: Option<String>,
    engine: Option<String>,
    cores: Option<usize>,
    #[serde(default)]
    placement: PlacementConfig,
    sim: Option<SimConfig>,
    #[serde(default)]
    input: Vec<TensorConfig>,
    #[serde(default)]
    output: Vec<TensorConfig>,
    versions: Option<VersionsConfig>,
    plan: Option<PlanConfig>,
    autopilot: Option<AutopilotConfig>,
    python: Option<PythonConfig>,
}

/// `[python]` of a `platform = "python"` model.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PythonConfig {
    /// Seconds `execute` may run before its stub is killed and started again; 0: no bound.
    execute_timeout_s: Option<f64>,
    /// Triton's `model_transaction_policy { decoupled: true }`: responses through the
    /// response sender, any number per request.
    decoupled: Option<bool>,
    /// The model's own Python environment (Triton's `EXECUTION_ENV_PATH`): a folder or a
    /// `.tar.gz`, relative to the model's folder.
    env: Option<String>,
}

/// An execute timeout in seconds (`what` names where it was read) as the engine takes it: 0 is
/// none, absent is the default.
fn execute_timeout(seconds: Option<f64>, what: &str) -> Result<Option<Duration>, String> {
    match seconds {
        None => Ok(Some(corral_engine::PYTHON_EXECUTE_TIMEOUT)),
        Some(0.0) => Ok(None),
        Some(s) if (0.001..=86_400.0).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(format!("{what} = {s}: give seconds from 0.001 to 86400 (0: no bound)")),
    }
}

/// `[autopilot]` of `config.toml`: the bounds, in instances.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutopilotConfig {
    min: Option<toml::Value>,
    max: Option<toml::Value>,
}

/// The engines a model's configuration may name. A model's configuration wins over the
/// process's `CORRAL_ONNX_ENGINE`, `auto` included (timed for that model whatever the
/// process runs others on).
pub const ENGINES: [&str; 4] = ["onnxruntime", "openvino", "tract", "auto"];

/// The engine `value` (of `key`) names, or an error naming the key and the accepted values.
fn engine(value: &str, key: &str) -> Result<Option<String>, String> {
    match value {
        known if ENGINES.contains(&known) => Ok(Some(known.to_owned())),
        other => Err(format!("{key} = `{other}` is not an engine; use {}", ENGINES.join(", "))),
    }
}

/// `auto` for an IR file (`.xml`) is OpenVINO, the one engine that reads it.
fn ir_on_openvino(engine: Option<String>, file: &Path) -> Option<String> {
    match engine.as_deref() {
        Some("auto") if file.extension().is_some_and(|e| e == "xml") => Some("openvino".to_owned()),
        _ => engine,
    }
}

/// A whole number written in a parameter's string value; the error names the parameter.
fn number(text: &str, what: &str) -> Result<i64, String> {
    text.trim().parse().map_err(|_| format!("{what}: `{text}` is not a whole number"))
}

/// Checks autopilot bounds read from a config (`what` names the keys' prefix).
fn bounds(min: Option<i64>, max: Option<i64>, what: &str) -> Result<Option<(usize, usize)>, String> {
    if min.is_none() && max.is_none() {
        return Ok(None);
    }
    let min = min.unwrap_or(1);
    if min < 1 {
        return Err(format!("{what}min = {min}: a model keeps at least 1 instance; use 1 or more"));
    }
    let max = match max {
        Some(max) if max < min => return Err(format!("{what}min = {min} is above {what}max = {max}")),
        Some(max) => max as usize,
        None => usize::MAX,
    };
    Ok(Some((min as usize, max)))
}

/// A whole number of instances from a TOML value, naming `key` when it is not one.
fn whole_instances(value: &toml::Value, key: &str) -> Result<i64, String> {
    let shown = match value {
        toml::Value::Float(f) => f.to_string(),
        toml::Value::String(text) => format!("\"{text}\""),
        other => format!("{other:?}"),
    };
    value.as_integer().ok_or_else(|| format!("{key} = {shown} is not a whole number of instances"))
}

/// `[plan]` of `config.toml`: what `corral plan --optimize` and `--predict` assume.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanConfig {
    /// Calls per second the model is planned for.
    rate: Option<f64>,
}

fn check_rate(rate: f64, what: &str) -> Result<f64, String> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(format!("{what} = {rate} is not valid; give calls per second, 0 or more"))
    }
}

/// `[plan] rate` of a `config.toml` (read apart: the model's own reader ignores it).
fn read_toml_plan_rate(path: &Path) -> Result<Option<f64>, RepositoryError> {
    let bad = |reason: String| RepositoryError::Model { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: Config = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    config.plan.and_then(|p| p.rate).map(|r| check_rate(r, "[plan] rate")).transpose().map_err(bad)
}

/// `corral.plan.rate` of a `config.pbtxt`.
fn pbtxt_plan_rate(config: Option<&ModelConfig>) -> Result<Option<f64>, String> {
    let Some(text) = config.and_then(|c| c.parameter("corral.plan.rate")) else { return Ok(None) };
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("corral.plan.rate = `{text}` is not a number; give calls per second, e.g. \"200\""))?;
    check_rate(rate, "corral.plan.rate").map(Some)
}

/// `[versions]` of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsConfig {
    policy: Option<String>,
    latest: Option<i64>,
    specific: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementConfig {
    start: Option<usize>,
    count: Option<Count>,
    group: Option<usize>,
    /// One instance at each start core (what `corral plan --optimize --write` writes).
    starts: Option<Vec<usize>>,
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
    let (folders, errors) = read_folders(path)?;
    Ok((folders.into_iter().map(|f| f.def).collect(), errors))
}

/// [`read`], with each model's folder as read (its versions, `config.pbtxt`, planning rate and
/// the file its placement is written in).
pub fn read_folders(path: &Path) -> Result<(Vec<ModelFolder>, Vec<RepositoryError>), RepositoryError> {
    if path.is_file() {
        if path.extension().is_none_or(|e| e != "onnx") {
            return Err(RepositoryError::Model {
                path: path.to_owned(),
                reason: "is neither a .onnx model nor a repository folder".to_owned(),
            });
        }
        let name = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
        let def = ModelDef::onnx(name, path);
        let dir = path.parent().map_or_else(PathBuf::new, Path::to_owned);
        let folder = ModelFolder {
            versions: vec![Version { number: 1, def: def.clone() }],
            def,
            pbtxt: None,
            dir,
            config_file: None,
            plan_rate: None,
        };
        return Ok((vec![folder], Vec::new()));
    }
    let entries = std::fs::read_dir(path).map_err(|source| RepositoryError::Read { path: path.to_owned(), source })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let (mut models, mut errors) = (Vec::new(), Vec::new());
    for dir in dirs {
        match read_folder(&dir) {
            Ok(Some(model)) => models.push(model),
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    Ok((models, errors))
}

/// An ensemble of a repository (`platform: "ensemble"` in its `config.pbtxt`): served by
/// `corral serve` only, holding no cores of its own; each call of it is one call of each step.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensemble {
    pub name: String,
    pub dir: PathBuf,
    /// Its steps' model names, in order, as often as they occur.
    pub steps: Vec<String>,
}

/// The ensembles of the repository `path` (none for a lone `.onnx` file); a folder whose
/// `config.pbtxt` does not read is left to [`read_folders`] to report.
pub fn read_ensembles(path: &Path) -> Vec<Ensemble> {
    let Ok(entries) = std::fs::read_dir(path) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.into_iter()
        .filter_map(|dir| {
            let config = corral_config::read_file(&dir.join("config.pbtxt")).ok()?;
            let scheduling = config.ensemble_scheduling()?;
            let steps = scheduling.step.iter().map(|step| step.model_name.clone()).collect();
            Some(Ensemble { name: folder_name(&dir), dir, steps })
        })
        .collect()
}

/// One model folder as read: what the runtime loads, and the folder's parsed `config.pbtxt`
/// when it has one (the server reads Triton's serving fields from it).
#[derive(Clone, Debug)]
pub struct ModelFolder {
    /// The highest selected version, named after the folder.
    pub def: ModelDef,
    /// The folder's `config.pbtxt` as read (or the configuration a load gave in its place).
    pub pbtxt: Option<ModelConfig>,
    /// Every version the policy selects, ascending, each named after the folder (a server
    /// renames them); a simulated model is version 1.
    pub versions: Vec<Version>,
    /// The model's folder (for a lone `.onnx` file, the file's folder).
    pub dir: PathBuf,
    /// The file its placement is read from (`config.toml`, else `config.pbtxt`); `None` for a
    /// folder with neither, or a lone file.
    pub config_file: Option<PathBuf>,
    /// Its planning demand, calls per second (`[plan] rate`, `corral.plan.rate`).
    pub plan_rate: Option<f64>,
}

/// One selected version of a model folder.
#[derive(Clone, Debug)]
pub struct Version {
    pub number: u64,
    pub def: ModelDef,
}

/// Which version folders of a model are loaded: Triton's `version_policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `n` highest versions (Triton's default is the latest 1).
    Latest(u64),
    All,
    /// Exactly these versions; each must exist.
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> VersionPolicy {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions of `model` to load out of those `found` (any order), ascending. A policy
    /// that selects nothing, or a specific version that is not there, is an error naming it,
    /// in Triton's words (`model_lifecycle.cc`, `VersionsToLoad`). Triton only logs a missing
    /// specific version when another one exists; corral refuses the load, so a typo in the
    /// list never serves less than was asked.
    pub fn select(&self, found: &[u64], model: &str) -> Result<Vec<u64>, String> {
        let mut found = found.to_vec();
        found.sort_unstable();
        found.dedup();
        let selected = match self {
            VersionPolicy::Latest(n) => found[found.len().saturating_sub(*n as usize)..].to_vec(),
            VersionPolicy::All => found.clone(),
            VersionPolicy::Specific(wanted) => {
                let mut wanted = wanted.clone();
                wanted.sort_unstable();
                wanted.dedup();
                if let Some(missing) = wanted.iter().find(|v| !found.contains(v)) {
                    return Err(format!(
                        "version {missing} is specified for model '{model}', but the version directory is not present"
                    ));
                }
                wanted
            }
        };
        if selected.is_empty() {
            let why = match self {
                VersionPolicy::Latest(0) => " (version_policy latest num_versions 0 selects none)",
                _ if found.is_empty() => " (no version folder such as 1/ was found)",
                _ => "",
            };
            return Err(format!(
                "at least one version must be available under the version policy of model '{model}'{why}"
            ));
        }
        Ok(selected)
    }
}

/// The numeric version folders of `dir`, ascending.
pub fn version_folders(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut versions: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u64>().ok()))
        .collect();
    versions.sort_unstable();
    versions
}

/// `version_policy` of a `config.pbtxt` (or of a load's configuration).
fn pbtxt_version_policy(config: &ModelConfig) -> Result<VersionPolicy, String> {
    let choice = config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref());
    match choice {
        None => Ok(VersionPolicy::default()),
        Some(PolicyChoice::Latest(latest)) => {
            latest_policy(u64::from(latest.num_versions), "version_policy latest num_versions")
        }
        Some(PolicyChoice::All(_)) => Ok(VersionPolicy::All),
        Some(PolicyChoice::Specific(specific)) => {
            let versions = specific
                .versions
                .iter()
                .map(|&v| {
                    u64::try_from(v)
                        .map_err(|_| format!("version_policy specific versions {v} is not valid; use 0 or more"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            specific_policy(versions, "version_policy specific versions")
        }
    }
}

fn latest_policy(n: u64, what: &str) -> Result<VersionPolicy, String> {
    if n == 0 {
        return Err(format!(
            "{what} = 0: at least one version must be available under the version policy; use 1 or more"
        ));
    }
    Ok(VersionPolicy::Latest(n))
}

fn specific_policy(versions: Vec<u64>, what: &str) -> Result<VersionPolicy, String> {
    if versions.is_empty() {
        return Err(format!("{what} is empty; name at least one version"));
    }
    Ok(VersionPolicy::Specific(versions))
}

/// `[versions]` of a `config.toml`.
fn toml_version_policy(config: Option<&VersionsConfig>) -> Result<VersionPolicy, String> {
    let Some(config) = config else { return Ok(VersionPolicy::default()) };
    let policy = match (&config.policy, &config.latest, &config.specific) {
        (Some(policy), ..) => policy.as_str(),
        (None, _, Some(_)) => "specific",
        (None, ..) => "latest",
    };
    let whole = |n: i64, what: &str| u64::try_from(n).map_err(|_| format!("{what} = {n} is not valid; use 0 or more"));
    match policy {
        "latest" if config.specific.is_none() => latest_policy(
            config.latest.map(|n| whole(n, "[versions] latest")).transpose()?.unwrap_or(1),
            "[versions] latest",
        ),
        "all" if config.latest.is_none() && config.specific.is_none() => Ok(VersionPolicy::All),
        "specific" if config.latest.is_none() => {
            let versions = config.specific.clone().ok_or("[versions] policy = \"specific\" needs specific = [..]")?;
            let versions =
                versions.into_iter().map(|n| whole(n, "[versions] specific")).collect::<Result<Vec<_>, _>>()?;
            specific_policy(versions, "[versions] specific")
        }
        "latest" | "all" | "specific" => Err(format!(
            "[versions] policy = \"{policy}\" cannot be combined with {}; give `latest = N` only with \"latest\" and `specific = [..]` only with \"specific\"",
            if config.latest.is_some() { "latest" } else { "specific" }
        )),
        other => Err(format!("[versions] policy = \"{other}\" is not valid; use \"latest\", \"all\" or \"specific\"")),
    }
}

/// The selected versions of `dir` under `policy`, each with its `file`, which must exist.
fn selected_versions(dir: &Path, policy: &VersionPolicy, file: &str) -> Result<Vec<(u64, PathBuf)>, String> {
    let found = version_folders(dir);
    if found.is_empty() {
        return Err(format!("no <version>/{file} found (e.g. 1/{file})"));
    }
    let model = folder_name(dir);
    policy
        .select(&found, &model)?
        .into_iter()
        .map(|v| {
            let path = dir.join(v.to_string()).join(file);
            if path.is_file() {
                Ok((v, path))
            } else {
                Err(format!("version {v} has no {file} ({v}/{file} is missing)"))
            }
        })
        .collect()
}

/// The folder's model as each selected version: `def` with its source at that version.
fn versions_of(def: &ModelDef, paths: Vec<(u64, PathBuf)>) -> Vec<Version> {
    paths
        .into_iter()
        .map(|(number, path)| {
            let source = match &def.source {
                ModelSource::Python(model) => {
                    ModelSource::Python(PythonModel { model_py: path, version: number.to_string(), ..model.clone() })
                }
                _ => ModelSource::Onnx(path),
            };
            Version { number, def: ModelDef { source, ..def.clone() } }
        })
        .collect()
}

/// A Triton Python model of `dir` (`<version>/model.py`) configured by `config` (Triton's
/// configuration as JSON), at the last of `paths`.
fn python_source(
    dir: &Path,
    config: serde_json::Value,
    paths: &[(u64, PathBuf)],
    execute_timeout: Option<Duration>,
) -> ModelSource {
    let (number, path) = paths.last().expect("a policy selects at least one version");
    ModelSource::Python(PythonModel {
        model_py: path.clone(),
        config_json: config.to_string(),
        name: folder_name(dir),
        version: number.to_string(),
        // Triton's `model_repository`: the model's own folder (its versions are in it).
        repository: dir.to_owned(),
        auto_complete: true,
        execute_timeout,
    })
}

/// Whether `dir` is a Python model with no configuration at all: a version folder holding
/// `model.py` and no `model.onnx` (Triton then chooses the backend from the file's name).
fn bare_python(dir: &Path) -> bool {
    !dir.join("config.toml").exists()
        && version_folders(dir).iter().any(|v| {
            let folder = dir.join(v.to_string());
            folder.join("model.py").is_file() && !folder.join("model.onnx").exists()
        })
}

/// Reads one model folder; `Ok(None)` for a folder that holds no model at all.
pub fn read_model(dir: &Path) -> Result<Option<ModelDef>, RepositoryError> {
    Ok(read_folder(dir)?.map(|folder| folder.def))
}

/// Reads one model folder with its `config.pbtxt`; `Ok(None)` for a folder that holds no model.
pub fn read_folder(dir: &Path) -> Result<Option<ModelFolder>, RepositoryError> {
    let pbtxt_path = dir.join("config.pbtxt");
    let pbtxt = match corral_config::read_file(&pbtxt_path) {
        Ok(config) => Some(config),
        Err(corral_config::ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    read_folder_as(dir, pbtxt, true)
}

/// Reads one model folder as `config` (a Triton model configuration given at load time, in
/// place of its `config.pbtxt`; its `config.toml`, if any, is not read either).
pub fn read_folder_with(dir: &Path, config: ModelConfig) -> Result<ModelFolder, RepositoryError> {
    let folder = read_folder_as(dir, Some(config), false)?;
    folder.ok_or_else(|| RepositoryError::Model { path: dir.to_owned(), reason: "no model file".to_owned() })
}

fn read_folder_as(
    dir: &Path,
    pbtxt: Option<ModelConfig>,
    toml_too: bool,
) -> Result<Option<ModelFolder>, RepositoryError> {
    let pbtxt_path = dir.join("config.pbtxt");
    let bad = |reason: String| RepositoryError::Model { path: pbtxt_path.clone(), reason };
    let (def, versions) = match &pbtxt {
        Some(config) => {
            let backend = check_as_triton(config, dir).map_err(bad)?;
            let file = pbtxt_model_file(config, backend).map_err(bad)?;
            let policy = pbtxt_version_policy(config).map_err(bad)?;
            if toml_too && dir.join("config.toml").is_file() {
                read_toml_model(dir, policy)?.ok_or_else(|| bad("no model file".to_owned()))?
            } else {
                pbtxt_model(dir, config, &file, &policy).map_err(bad)?
            }
        }
        None if bare_python(dir) => {
            let config = ModelConfig { name: folder_name(dir), backend: "python".to_owned(), ..Default::default() };
            let policy = VersionPolicy::default();
            pbtxt_model(dir, &config, "model.py", &policy).map_err(bad)?
        }
        None => match read_toml_model(dir, VersionPolicy::default())? {
            Some(model) => model,
            None => return Ok(None),
        },
    };
    let toml_path = dir.join("config.toml");
    let config_file = if toml_too && toml_path.is_file() {
        Some(toml_path)
    } else {
        pbtxt.is_some().then(|| dir.join("config.pbtxt")).filter(|p| p.is_file())
    };
    let plan_rate = match &config_file {
        Some(file) if file.extension().is_some_and(|e| e == "toml") => read_toml_plan_rate(file)?,
        _ => pbtxt_plan_rate(pbtxt.as_ref()).map_err(bad)?,
    };
    Ok(Some(ModelFolder { def, pbtxt, versions, dir: dir.to_owned(), config_file, plan_rate }))
}

/// What Triton checks of a configuration once read (`corral_config::validate`), on the
/// backend Triton would complete it with: the one named, else the platform's, else, for an
/// ONNX model file, `onnxruntime` (core model_config_utils.cc, `AutoCompleteBackendFields`).
/// A configuration that names neither and has no version folder to tell is Triton's error.
/// Returns that backend.
fn check_as_triton<'a>(config: &'a ModelConfig, dir: &Path) -> Result<&'a str, String> {
    let model = folder_name(dir);
    let backend = match (config.backend.as_str(), config.platform.as_str()) {
        ("", "onnxruntime_onnx") => "onnxruntime",
        ("", "tensorflow_savedmodel" | "tensorflow_graphdef" | "tensorrt_plan" | "pytorch_libtorch" | "ensemble") => "",
        ("", "") if version_folders(dir).is_empty() => {
            return Err(format!(
                "Invalid model name: Could not determine backend for model '{model}' with no backend in model configuration. Expected model name of the form 'model.<backend_name>'."
            ));
        }
        ("", _) if config.default_model_filename.is_empty() || config.default_model_filename.ends_with(".onnx") => {
            "onnxruntime"
        }
        (backend, _) => backend,
    };
    corral_config::validate(config, &model, backend)?;
    Ok(backend)
}

/// The model's name: its folder's.
fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
}

/// The model file a `config.pbtxt` names (`default_model_filename`, else `model.onnx`), after
/// checking that its backend, as [`check_as_triton`] completed it, is one corral runs.
fn pbtxt_model_file(config: &ModelConfig, backend: &str) -> Result<String, String> {
    let default = match backend {
        "onnxruntime" => "model.onnx",
        // Triton's Python backend runs `model.py` (SPEC §13).
        "python" => "model.py",
        // Triton's OpenVINO backend reads IR by default.
        "openvino" => "model.xml",
        _ if config.ensemble_scheduling().is_some() => {
            return Err(
                "an ensemble: it runs under `corral serve`, which loads its steps (each a model of its own here)"
                    .to_owned(),
            );
        }
        _ => {
            let (platform, backend) = (&config.platform, &config.backend);
            return Err(format!(
                "platform `{platform}` / backend `{backend}` is not served by corral; use platform \"onnxruntime_onnx\", or backend \"onnxruntime\", \"openvino\" or \"python\""
            ));
        }
    };
    let file = match config.default_model_filename.as_str() {
        "" => default.to_owned(),
        named => named.to_owned(),
    };
    if file.contains('/') || file.starts_with('.') {
        return Err(format!("default_model_filename `{file}` must be a plain file name"));
    }
    Ok(file)
}

fn pbtxt_model(
    dir: &Path,
    config: &ModelConfig,
    file: &str,
    policy: &VersionPolicy,
) -> Result<(ModelDef, Vec<Version>), String> {
    let paths = selected_versions(dir, policy, file)?;
    let path = paths.last().expect("a policy selects at least one version").1.clone();
    let k = config.parameter("corral.cores").map(|v| number(v, "corral.cores")).transpose()?.unwrap_or(1);
    if k < 1 {
        return Err(format!("corral.cores = {k}: a model needs at least 1 core per instance"));
    }
    let k = k as usize;
    let replicas = pbtxt_replicas(config)?;
    let placement = pbtxt_placement(config, k, replicas)?;
    let name = folder_name(dir);
    let elastic = match config.parameter("corral.elastic") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("corral.elastic = `{other}` is not valid; use \"true\" or \"false\"")),
    };
    let parameter = |key: &str| config.parameter(key).map(|v| number(v, key)).transpose();
    let autopilot =
        bounds(parameter("corral.autopilot.min")?, parameter("corral.autopilot.max")?, "corral.autopilot.")?;
    // Only OpenVINO reads IR: its backend's models stay on it unless another engine is named.
    let named = config.parameter("corral.engine").map(|value| engine(value, "corral.engine")).transpose()?.flatten();
    let engine = named.or_else(|| (config.backend == "openvino").then(|| "openvino".to_owned()));
    let source = if file.ends_with(".py") {
        let mut json = corral_config::to_json(config);
        json["name"] = serde_json::Value::String(name.clone());
        json["backend"] = serde_json::Value::String("python".to_owned());
        let key = "corral.python.execute_timeout_s";
        let seconds = config
            .parameter(key)
            .map(|v| v.trim().parse::<f64>().map_err(|_| format!("{key} = `{v}` is not a number of seconds")))
            .transpose()?;
        python_source(dir, json, &paths, execute_timeout(seconds, key)?)
    } else {
        ModelSource::Onnx(path.clone())
    };
    let engine = if file.ends_with(".py") { None } else { ir_on_openvino(engine, &path) };
    let def = ModelDef { name, source, cores_per_instance: k, placement, elastic, autopilot, engine };
    let versions = versions_of(&def, paths);
    Ok((def, versions))
}

/// The replicas `instance_group { count }` asks for, summed over groups (a group without a
/// count, or with 0, is 1 instance).
fn pbtxt_replicas(config: &ModelConfig) -> Result<Option<usize>, String> {
    let mut total = None;
    for group in &config.instance_group {
        let kind = GroupKind::try_from(group.kind);
        if !matches!(kind, Ok(GroupKind::Cpu | GroupKind::Auto | GroupKind::Model)) {
            let kind = kind.map_or_else(|_| group.kind.to_string(), |k| k.as_str_name().to_owned());
            return Err(format!("instance_group kind {kind} is not served by corral; use KIND_CPU"));
        }
        *total.get_or_insert(0) += group.count.max(1) as usize;
    }
    Ok(total)
}

fn pbtxt_placement(config: &ModelConfig, k: usize, replicas: Option<usize>) -> Result<Option<Where>, String> {
    if let Some(starts) = config.parameter("corral.starts") {
        let others = ["corral.start", "corral.count", "corral.group"];
        if others.iter().any(|key| config.parameter(key).is_some()) {
            return Err("corral.starts cannot be combined with corral.start, corral.count or corral.group".to_owned());
        }
        let starts = starts
            .split(',')
            .map(|s| {
                s.trim().parse::<usize>().map_err(|_| {
                    format!(
                        "corral.starts = `{starts}` is not valid; give start cores separated by commas, e.g. \"0,14\""
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // instance_group count, if any, is what the list already says: one instance per start.
        return Ok(Some(Where::Starts(starts)));
    }
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

/// A folder read by its `config.toml` (or by its `<version>/model.onnx` alone); its
/// `[versions]`, else `policy` (from a `config.pbtxt` beside it, else the default).
fn read_toml_model(dir: &Path, policy: VersionPolicy) -> Result<Option<(ModelDef, Vec<Version>)>, RepositoryError> {
    let name = folder_name(dir);
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
    let policy = match &config.versions {
        Some(_) => toml_version_policy(config.versions.as_ref()).map_err(|reason| bad(&config_path, reason))?,
        None => policy,
    };
    let platform = config.platform.as_deref().unwrap_or("onnx");
    let (source, paths) = match platform {
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
            let model = SimModel {
                inputs: tensors(&config.input, "input")?,
                outputs: tensors(&config.output, "output")?,
                latency: Duration::from_secs_f64(sim.latency_ms / 1e3),
                switch: Duration::from_secs_f64(sim.switch_ms / 1e3),
            };
            (ModelSource::Sim(model), None)
        }
        "onnx" | "onnxruntime_onnx" | "openvino" => {
            if version_folders(dir).is_empty() && !config_path.exists() {
                return Ok(None);
            }
            let file = if platform == "openvino" { "model.xml" } else { "model.onnx" };
            let paths = selected_versions(dir, &policy, file).map_err(|reason| bad(dir, reason))?;
            let path = paths.last().expect("a policy selects at least one version").1.clone();
            (ModelSource::Onnx(path), Some(paths))
        }
        "python" => {
            let paths = selected_versions(dir, &policy, "model.py").map_err(|reason| bad(dir, reason))?;
            // Triton's configuration as `initialize` reads it, from the [[input]]/[[output]] tables.
            let triton = |list: &[TensorConfig]| -> Result<Vec<serde_json::Value>, RepositoryError> {
                list.iter()
                    .map(|t| {
                        let datatype: DataType =
                            t.datatype.parse().map_err(|e| bad(&config_path, format!("`{}`: {e}", t.name)))?;
                        let name = match datatype {
                            DataType::Bytes => "STRING",
                            other => other.kserve_name(),
                        };
                        let dims = t.shape.clone().unwrap_or_default();
                        Ok(serde_json::json!({"name": t.name, "data_type": format!("TYPE_{name}"), "dims": dims}))
                    })
                    .collect()
            };
            let mut json = serde_json::json!({
                "name": name,
                "backend": "python",
                "input": triton(&config.input)?,
                "output": triton(&config.output)?,
            });
            if config.python.as_ref().and_then(|p| p.decoupled) == Some(true) {
                json["model_transaction_policy"] = serde_json::json!({"decoupled": true});
            }
            if let Some(env) = config.python.as_ref().and_then(|p| p.env.as_ref()) {
                json["parameters"] = serde_json::json!({"EXECUTION_ENV_PATH": {"string_value": env}});
            }
            let seconds = config.python.as_ref().and_then(|p| p.execute_timeout_s);
            let timeout = execute_timeout(seconds, "[python] execute_timeout_s").map_err(|r| bad(&config_path, r))?;
            (python_source(dir, json, &paths, timeout), Some(paths))
        }
        other => {
            return Err(bad(
                &config_path,
                format!("platform `{other}` is not supported; use \"onnx\", \"openvino\", \"python\" or \"sim\""),
            ));
        }
    };
    let autopilot = match &config.autopilot {
        Some(a) => {
            let min = a.min.as_ref().map(|v| whole_instances(v, "[autopilot] min")).transpose();
            let max = a.max.as_ref().map(|v| whole_instances(v, "[autopilot] max")).transpose();
            let (min, max) = (min.map_err(|r| bad(&config_path, r))?, max.map_err(|r| bad(&config_path, r))?);
            bounds(min, max, "[autopilot] ").map_err(|reason| bad(&config_path, reason))?
        }
        None => None,
    };
    // Only OpenVINO reads IR: its platform's models stay on it unless another engine is named.
    let named = config.engine.as_deref().map(|value| engine(value, "engine")).transpose();
    let named = named.map_err(|reason| bad(&config_path, reason))?.flatten();
    let engine = named.or_else(|| (platform == "openvino").then(|| "openvino".to_owned()));
    let engine = match &source {
        ModelSource::Onnx(path) => ir_on_openvino(engine, path),
        ModelSource::Sim(_) | ModelSource::Python(_) => engine,
    };
    let elastic = config.placement.elastic;
    let def = ModelDef { name, source, cores_per_instance: k, placement, elastic, autopilot, engine };
    let versions = match paths {
        Some(paths) => versions_of(&def, paths),
        // A simulated model has no version folders: it is version 1.
        None => vec![Version { number: 1, def: def.clone() }],
    };
    Ok(Some((def, versions)))
}

fn placement(config: &PlacementConfig) -> Result<Option<Where>, String> {
    if let Some(starts) = &config.starts {
        if config.start.is_some() || config.count.is_some() || config.group.is_some() {
            return Err("placement starts cannot be combined with start, count or group".to_owned());
        }
        if starts.is_empty() {
            return Err("placement starts is empty; name at least one start core".to_owned());
        }
        return Ok(Some(Where::Starts(starts.clone())));
    }
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
