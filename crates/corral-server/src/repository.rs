//! The server's view of a model repository: the model folder is read by
//! `corral_runtime::repository` (corral's `config.toml` or Triton's `config.pbtxt`, typed by
//! `corral-config`, placement included), and this module adds what only a server needs from
//! the typed `ModelConfig`: `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`,
//! an input's `format`, an output's `label_filename`, read at load from the model folder),
//! `dynamic_batching { max_queue_delay_microseconds }` and the sequence batcher's controls
//! (checked as Triton checks them, in its words). The message itself is kept, as read, for the
//! configuration endpoint. Other fields are accepted and ignored, except those that change what
//! a call means (see [`refuse_unsupported`]).
//!
//! Model names are checked before any path is built: a name is a plain folder name of the
//! repository (letters, digits, `_`, `-`, `.`; not starting with `.`), so a request can never
//! make the server read outside it.

use std::{path::Path, time::Duration};

use corral_config::{
    ModelConfig, ModelSequenceBatching, model_sequence_batching::Control as ControlPb,
    model_sequence_batching::control::Kind as ControlKindPb, model_version_policy::PolicyChoice,
};
use corral_engine::{DataType, ModelSource, TensorSpec};
use corral_runtime::{ModelDef, repository as runtime_repository};

/// What the server adds to a runtime model: Triton's batching and declared tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeConfig {
    /// Triton's `platform` string for metadata and config answers.
    pub platform: String,
    /// 0: no batch dimension. Otherwise the first dimension of every input and output is the
    /// batch, up to this size.
    pub max_batch_size: usize,
    /// Requests combined into one execution wait at most this long; `None`: no batching.
    pub batch_delay: Option<Duration>,
    /// The dynamic batcher's `default_queue_policy { max_queue_size }`: calls waiting beyond
    /// it are refused (0: no bound of Triton's).
    pub max_queue_size: usize,
    /// Declared in `config.pbtxt` (shape without the batch dimension), else empty.
    pub inputs: Vec<Declared>,
    pub outputs: Vec<Declared>,
    /// Triton's sequence batcher (`sequence_batching`), when the model is stateful.
    pub sequence: Option<SequenceConfig>,
    /// The model's configuration as read (`config.pbtxt`, or a load's `config`); empty for a
    /// `config.toml` model. The configuration endpoint completes it.
    pub model_config: ModelConfig,
    /// `model_transaction_policy { decoupled: true }` (a Python model's, config.toml's
    /// `[python] decoupled`): any number of responses per request, streamed.
    pub decoupled: bool,
}

/// `sequence_batching`: how long a sequence may idle, and the control inputs corral fills.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceConfig {
    pub idle: Duration,
    pub controls: Vec<Control>,
}

/// One `control_input`: the input it fills and with what.
#[derive(Clone, Debug, PartialEq)]
pub struct Control {
    pub input: String,
    pub kind: ControlKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ControlKind {
    /// START, END or READY, as the pair of values for false and true.
    Flag(Flag, FlagValues),
    /// The sequence's id, as this type.
    CorrId(DataType),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Start,
    End,
    Ready,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlagValues {
    Int32([i32; 2]),
    Fp32([f32; 2]),
    Bool([bool; 2]),
}

/// Fields of a model configuration that corral does not honour: a load that names them fails
/// rather than serve something else than the configuration says.
fn refuse_unsupported(config: &ModelConfig) -> Result<(), String> {
    let decoupled = config.model_transaction_policy.as_ref().is_some_and(|p| p.decoupled);
    if decoupled && config.sequence_batching().is_some() {
        return Err(
            "model_transaction_policy { decoupled: true } with sequence_batching: corral does not run a decoupled model's sequences".to_owned(),
        );
    }
    if config.model_transaction_policy.as_ref().is_some_and(|p| p.decoupled) && config.backend != "python" {
        return Err(
            "model_transaction_policy { decoupled: true }: only Python models (backend \"python\") are decoupled in corral"
                .to_owned(),
        );
    }
    if config.sequence_batching().is_some_and(|s| !s.state.is_empty()) {
        return Err("sequence_batching { state }: implicit state is not served by corral".to_owned());
    }
    Ok(())
}

/// A datatype of the configuration as corral's, by its Triton name (`TYPE_FP32`).
fn datatype(value: i32) -> Result<DataType, String> {
    let name =
        corral_config::DataType::try_from(value).map_or_else(|_| value.to_string(), |t| t.as_str_name().to_owned());
    name.parse()
}

/// The false and true values of one START, END or READY control. The configuration was
/// checked when read (`corral_config::validate`: one list, of 2 entries), so the first
/// list given is the one.
fn flag_values(control: &ControlPb) -> FlagValues {
    if let [off, on] = control.int32_false_true[..] {
        FlagValues::Int32([off, on])
    } else if let [off, on] = control.fp32_false_true[..] {
        FlagValues::Fp32([off, on])
    } else if let [off, on] = control.bool_false_true[..] {
        FlagValues::Bool([off, on])
    } else {
        unreachable!("validate checked each flag control gives one list of 2 values")
    }
}

/// The sequence batcher's controls as the server fills them. Triton's checks of them ran when
/// the configuration was read; what is left is what corral does not serve.
fn sequence_config(sequence: &ModelSequenceBatching) -> Result<SequenceConfig, String> {
    let idle = match sequence.max_sequence_idle_microseconds {
        // Triton's SEQUENCE_IDLE_DEFAULT_MICROSECONDS.
        0 => 1_000_000,
        micros => micros,
    };
    let mut controls = Vec::new();
    for input in &sequence.control_input {
        for control in &input.control {
            let kind = match ControlKindPb::try_from(control.kind) {
                Ok(ControlKindPb::ControlSequenceStart) => ControlKind::Flag(Flag::Start, flag_values(control)),
                Ok(ControlKindPb::ControlSequenceEnd) => ControlKind::Flag(Flag::End, flag_values(control)),
                Ok(ControlKindPb::ControlSequenceReady) => ControlKind::Flag(Flag::Ready, flag_values(control)),
                Ok(ControlKindPb::ControlSequenceCorrid) => {
                    let datatype = match corral_config::DataType::try_from(control.data_type) {
                        Ok(corral_config::DataType::TypeInt64) => DataType::I64,
                        Ok(corral_config::DataType::TypeInt32) => DataType::I32,
                        other => {
                            let name =
                                other.map_or_else(|_| control.data_type.to_string(), |t| t.as_str_name().to_owned());
                            return Err(format!(
                                "control_input `{}`: CORRID of {name} is not served by corral; use TYPE_INT64 or TYPE_INT32",
                                input.name
                            ));
                        }
                    };
                    ControlKind::CorrId(datatype)
                }
                Err(_) => {
                    return Err(format!(
                        "control_input `{}`: control kind {} is not served by corral",
                        input.name, control.kind
                    ));
                }
            };
            controls.push(Control { input: input.name.clone(), kind });
        }
    }
    Ok(SequenceConfig { idle: Duration::from_micros(idle), controls })
}

/// A tensor the configuration declares: its name, type and `dims` (the shape without the
/// batch dimension), and what only a configuration says of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub spec: TensorSpec,
    /// An output's labels, from its `label_filename` (line `i` names class `i`).
    pub labels: Vec<String>,
    /// An input the configuration marks `optional`: a request may leave it out.
    pub optional: bool,
}

/// One model as the repository describes it: each version its policy selects, ascending,
/// and the serving fields they share.
#[derive(Clone, Debug)]
pub struct RepoModel {
    pub versions: Vec<RepoVersion>,
    pub config: ServeConfig,
    /// An ensemble's plan and its versions (it has no runtime model: `versions` is empty).
    pub ensemble: Option<(std::sync::Arc<crate::ensemble::Plan>, Vec<u64>)>,
}

/// One version to serve: the runtime model, named `NAME@V` (so `corral ls`, `top` and
/// `monitor` tell versions apart), placed as a model of its own.
#[derive(Clone, Debug)]
pub struct RepoVersion {
    pub number: u64,
    pub def: ModelDef,
}

/// The runtime's name for version `version` of model `name`.
pub fn runtime_name(name: &str, version: u64) -> String {
    format!("{name}@{version}")
}

pub(crate) fn versions(name: &str, folder: runtime_repository::ModelFolder) -> Vec<RepoVersion> {
    folder
        .versions
        .into_iter()
        .map(|v| RepoVersion { number: v.number, def: ModelDef { name: runtime_name(name, v.number), ..v.def } })
        .collect()
}

/// Why a model could not be read; each protocol answers in Triton's words and codes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RepoError {
    #[error(
        "`{0}` is not a valid model name: use letters, digits, `_`, `-` and `.` (not first), at most 128 characters"
    )]
    BadName(String),
    #[error("no model named `{0}` in the repository")]
    NotFound(String),
    /// The files given with a load could not be written (Triton: a failed poll).
    #[error("{0}")]
    Given(String),
    /// A load request's own mistake (its configuration or files), in Triton's words.
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a requested model name; only then may it become a path.
pub fn check_name(name: &str) -> Result<(), RepoError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok { Ok(()) } else { Err(RepoError::BadName(name.to_owned())) }
}

/// The model folders of `repo`, by name, whether or not they are valid.
pub fn names(repo: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repo) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| check_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Reads model `name` of `repo`.
pub fn read(repo: &Path, name: &str) -> Result<RepoModel, RepoError> {
    check_name(name)?;
    let dir = repo.join(name);
    if !dir.is_dir() {
        return Err(RepoError::NotFound(name.to_owned()));
    }
    // An ensemble's configuration (a file that does not read is the runtime reader's to say).
    if let Ok(config) = corral_config::read_file(&dir.join("config.pbtxt"))
        && crate::ensemble::is_ensemble(&config)
    {
        return read_ensemble(&dir, name, config);
    }
    let folder = runtime_repository::read_folder(&dir).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let folder = folder.ok_or_else(|| {
        RepoError::Invalid(format!("{}: holds no config.toml, config.pbtxt or <version>/model.onnx", dir.display()))
    })?;
    let mut config = match &folder.pbtxt {
        Some(pbtxt) => serve_config(pbtxt, &dir)
            .map_err(|reason| RepoError::Invalid(format!("{}: {reason}", dir.join("config.pbtxt").display())))?,
        None => ServeConfig::default(),
    };
    if let ModelSource::Python(python) = &folder.def.source {
        // config.toml's `[python] decoupled` is in the configuration the stub gets.
        let json: serde_json::Value = serde_json::from_str(&python.config_json).unwrap_or_default();
        config.decoupled = json["model_transaction_policy"]["decoupled"] == true;
        if config.decoupled {
            config.batch_delay = None;
        }
    }
    config.platform = match folder.def.source {
        ModelSource::Sim(_) => "corral_sim",
        ModelSource::Onnx(_) => "onnxruntime_onnx",
        // Triton's Python models have a backend and no platform.
        ModelSource::Python(_) => "",
    }
    .to_owned();
    Ok(RepoModel { versions: versions(name, folder), config, ensemble: None })
}

/// An ensemble's folder: its configuration checked as Triton checks it alone (its steps are
/// checked when it loads, against their loaded models), and its versions: the version folders
/// its policy selects (Triton's default: the highest), or version 1 when it has none (an
/// ensemble has no file to put in one; Triton wants the folder, corral does not).
pub(crate) fn read_ensemble(dir: &Path, name: &str, config: ModelConfig) -> Result<RepoModel, RepoError> {
    let invalid = |reason: String| RepoError::Invalid(format!("{}: {reason}", dir.join("config.pbtxt").display()));
    corral_config::validate(&config, name, "").map_err(invalid)?;
    let plan = crate::ensemble::plan(&config, name).map_err(invalid)?;
    let mut serve = serve_config(&config, dir).map_err(invalid)?;
    serve.platform = corral_config::validate::ENSEMBLE.to_owned();
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    numbers.sort_unstable();
    let selected = match config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref()) {
        None if numbers.is_empty() => vec![1],
        None => numbers.last().copied().into_iter().collect(),
        Some(PolicyChoice::All(_)) => numbers,
        Some(PolicyChoice::Latest(latest)) => {
            numbers.iter().rev().take(latest.num_versions.max(1) as usize).rev().copied().collect()
        }
        Some(PolicyChoice::Specific(specific)) => {
            specific.versions.iter().filter_map(|&v| u64::try_from(v).ok()).filter(|v| numbers.contains(v)).collect()
        }
    };
    if selected.is_empty() {
        return Err(invalid(format!("no version folder of {} is selected by its version_policy", dir.display())));
    }
    Ok(RepoModel { versions: Vec::new(), config: serve, ensemble: Some((std::sync::Arc::new(plan), selected)) })
}

/// Triton's serving fields of a configuration whose model the runtime's reader accepted;
/// label files are read from `dir`, the model folder (whose name is the model's).
pub(crate) fn serve_config(config: &ModelConfig, dir: &Path) -> Result<ServeConfig, String> {
    let max_batch_size = config.max_batch_size;
    if max_batch_size < 0 {
        return Err(format!("max_batch_size {max_batch_size} is not valid; use 0 or more"));
    }
    let batch_delay = config.dynamic_batching().map(|d| Duration::from_micros(d.max_queue_delay_microseconds));
    let declared = |field: &str, name: &str, data_type: i32, dims: &[i64], label_filename: &str| {
        let datatype = datatype(data_type).map_err(|e| format!("{field} `{name}`: {e}"))?;
        let labels = match Some(label_filename).filter(|f| !f.is_empty()) {
            Some(file) => {
                let plain = Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !plain {
                    return Err(format!(
                        "{field} `{name}`: label_filename `{file}` must name a file inside the model folder"
                    ));
                }
                crate::classify::read_labels(&dir.join(file)).map_err(|e| format!("{field} `{name}`: {e}"))?
            }
            None => Vec::new(),
        };
        Ok(Declared { spec: TensorSpec::new(name, datatype, dims.to_vec()), labels, optional: false })
    };
    let inputs = config
        .input
        .iter()
        .map(|t| declared("input", &t.name, t.data_type, &t.dims, "").map(|d| Declared { optional: t.optional, ..d }))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = config
        .output
        .iter()
        .map(|t| declared("output", &t.name, t.data_type, &t.dims, &t.label_filename))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_unsupported(config)?;
    let sequence = config.sequence_batching().map(sequence_config).transpose()?;
    Ok(ServeConfig {
        platform: String::new(),
        max_batch_size: max_batch_size as usize,
        // A sequence model's calls go to their sequence's instance, one by one.
        batch_delay: batch_delay.filter(|_| max_batch_size > 0 && sequence.is_none()),
        max_queue_size: config
            .dynamic_batching()
            .and_then(|d| d.default_queue_policy.as_ref())
            .map_or(0, |p| p.max_queue_size as usize),
        inputs,
        outputs,
        sequence,
        model_config: config.clone(),
        decoupled: config.model_transaction_policy.as_ref().is_some_and(|p| p.decoupled),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_at_load_and_bad_ones_fail_it() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("labels.txt"), "cat\ndog\n").expect("labels");
        let config = |output: &str| {
            let text = format!(
                "input [ {{ name: \"x\" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 2 ] }} ]\noutput [ {{ name: \"y\" data_type: TYPE_FP32 dims: [ 2 ] {output} }} ]"
            );
            serve_config(&corral_config::from_text(&text).expect("parses"), dir.path())
        };
        let good = config("label_filename: \"labels.txt\"").expect("loads");
        assert_eq!(good.outputs[0].labels, ["cat", "dog"]);
        assert_eq!(good.model_config.input[0].format, corral_config::model_input::Format::Nchw as i32);
        let missing = config("label_filename: \"nope.txt\"").unwrap_err();
        assert!(missing.starts_with("output `y`: label_filename: cannot read "), "{missing}");
        assert_eq!(
            config("label_filename: \"../labels.txt\"").unwrap_err(),
            "output `y`: label_filename `../labels.txt` must name a file inside the model folder"
        );
    }

    #[test]
    fn names_that_could_leave_the_repository_are_refused() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a\\b", "x\0", &"n".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["resnet50", "light_squeezenet", "model-v2.onnx"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }
}
