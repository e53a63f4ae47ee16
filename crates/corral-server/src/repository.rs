//! The server's view of a model repository: the model folder is read by
//! `corral_runtime::repository` (corral's `config.toml` or Triton's `config.pbtxt`, placement
//! included), and this module adds what only a server needs from `config.pbtxt`:
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`, an input's `format`, an
//! output's `label_filename`, read at load from the model folder) and
//! `dynamic_batching { max_queue_delay_microseconds }`. Other fields are accepted and ignored,
//! except those that change what a call means (see [`refuse_unsupported`]).
//!
//! Model names are checked before any path is built: a name is a plain folder name of the
//! repository (letters, digits, `_`, `-`, `.`; not starting with `.`), so a request can never
//! make the server read outside it.

use std::{path::Path, time::Duration};

use corral_engine::{DataType, ModelSource};
use corral_runtime::{
    ModelDef,
    repository::{
        self as runtime_repository,
        pbtxt::{Message, Value, number},
    },
};

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
    /// Declared in `config.pbtxt` (shape without the batch dimension), else empty.
    pub inputs: Vec<Declared>,
    pub outputs: Vec<Declared>,
    /// Triton's sequence batcher (`sequence_batching`), when the model is stateful.
    pub sequence: Option<SequenceConfig>,
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
fn refuse_unsupported(config: &Message) -> Result<(), String> {
    if config.get("ensemble_scheduling").is_some() {
        return Err("ensemble_scheduling: ensembles are not served by corral".to_owned());
    }
    if let Some(Value::Message(policy)) = config.get("model_transaction_policy")
        && policy.text("decoupled") == Some("true")
    {
        return Err(
            "model_transaction_policy { decoupled: true }: decoupled models are not served by corral".to_owned()
        );
    }
    if let Some(Value::Message(sequence)) = config.get("sequence_batching")
        && sequence.get("state").is_some()
    {
        return Err("sequence_batching { state }: implicit state is not served by corral".to_owned());
    }
    Ok(())
}

fn sequence_config(config: &Message) -> Result<Option<SequenceConfig>, String> {
    let Some(sequence) = config.get("sequence_batching") else { return Ok(None) };
    let Value::Message(sequence) = sequence else { return Err("sequence_batching must be a message".to_owned()) };
    let idle = sequence
        .text("max_sequence_idle_microseconds")
        .map(|t| number(t, "max_sequence_idle_microseconds"))
        .transpose()?
        .unwrap_or(1_000_000);
    let mut controls = Vec::new();
    for input in sequence.all("control_input") {
        let Value::Message(input) = input else { return Err("control_input must be a message".to_owned()) };
        let name = input.text("name").ok_or("a control_input has no name")?.to_owned();
        for control in input.all("control") {
            let Value::Message(control) = control else { return Err(format!("control_input `{name}`: bad control")) };
            let kind = control.text("kind").unwrap_or_default();
            let pair = |field: &'static str| -> Option<Vec<String>> {
                let values: Vec<String> = control.all(field).filter_map(Value::text).map(str::to_owned).collect();
                (!values.is_empty()).then_some(values)
            };
            let values = if let Some(v) = pair("int32_false_true") {
                let n = |i: usize| v.get(i).map(|t| number(t, "int32_false_true")).transpose();
                FlagValues::Int32([n(0)?.unwrap_or(0) as i32, n(1)?.unwrap_or(1) as i32])
            } else if let Some(v) = pair("fp32_false_true") {
                let f =
                    |i: usize| v.get(i).and_then(|t| t.parse::<f32>().ok()).ok_or("fp32_false_true needs two numbers");
                FlagValues::Fp32([f(0)?, f(1)?])
            } else if let Some(v) = pair("bool_false_true") {
                FlagValues::Bool([v.first().is_some_and(|t| t == "true"), v.get(1).is_some_and(|t| t == "true")])
            } else {
                FlagValues::Int32([0, 1])
            };
            let kind = match kind {
                "CONTROL_SEQUENCE_START" => ControlKind::Flag(Flag::Start, values),
                "CONTROL_SEQUENCE_END" => ControlKind::Flag(Flag::End, values),
                "CONTROL_SEQUENCE_READY" => ControlKind::Flag(Flag::Ready, values),
                "CONTROL_SEQUENCE_CORRID" => {
                    let data_type = control.text("data_type").unwrap_or("TYPE_UINT64");
                    let datatype = match data_type {
                        "TYPE_INT64" => DataType::I64,
                        "TYPE_INT32" => DataType::I32,
                        other => {
                            return Err(format!(
                                "control_input `{name}`: CORRID of {other} is not served by corral; use TYPE_INT64 or TYPE_INT32"
                            ));
                        }
                    };
                    ControlKind::CorrId(datatype)
                }
                other => return Err(format!("control_input `{name}`: control kind `{other}` is not served by corral")),
            };
            controls.push(Control { input: name.clone(), kind });
        }
    }
    Ok(Some(SequenceConfig { idle: Duration::from_micros(idle.max(0) as u64), controls }))
}

#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
    /// An input's `format` (`FORMAT_NCHW`, …), shown back as given; `None` when absent.
    pub format: Option<String>,
    /// An output's `label_filename`, and its labels (line `i` names class `i`).
    pub label_filename: Option<String>,
    pub labels: Vec<String>,
}

/// One model as the repository describes it: each version its policy selects, ascending,
/// and the serving fields they share.
#[derive(Clone, Debug)]
pub struct RepoModel {
    pub versions: Vec<RepoVersion>,
    pub config: ServeConfig,
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

fn versions(name: &str, folder: runtime_repository::ModelFolder) -> Vec<RepoVersion> {
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
    let folder = runtime_repository::read_folder(&dir).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let folder = folder.ok_or_else(|| {
        RepoError::Invalid(format!("{}: holds no config.toml, config.pbtxt or <version>/model.onnx", dir.display()))
    })?;
    let mut config = match &folder.pbtxt {
        Some(pbtxt) => serve_config(pbtxt, &dir)
            .map_err(|reason| RepoError::Invalid(format!("{}: {reason}", dir.join("config.pbtxt").display())))?,
        None => ServeConfig::default(),
    };
    config.platform = match folder.def.source {
        ModelSource::Sim(_) => "corral_sim",
        ModelSource::Onnx(_) => "onnxruntime_onnx",
    }
    .to_owned();
    Ok(RepoModel { versions: versions(name, folder), config })
}

/// Triton's serving fields of a `config.pbtxt` whose model the runtime's reader accepted;
/// label files are read from `dir`, the model folder.
fn serve_config(config: &Message, dir: &Path) -> Result<ServeConfig, String> {
    let max_batch_size = config.text("max_batch_size").map(|t| number(t, "max_batch_size")).transpose()?;
    let max_batch_size = max_batch_size.unwrap_or(0);
    if max_batch_size < 0 {
        return Err(format!("max_batch_size {max_batch_size} is not valid; use 0 or more"));
    }
    let batch_delay = match config.get("dynamic_batching") {
        Some(Value::Message(batching)) => {
            let micros = batching
                .text("max_queue_delay_microseconds")
                .map(|t| number(t, "max_queue_delay_microseconds"))
                .transpose()?
                .unwrap_or(0);
            Some(Duration::from_micros(micros.max(0) as u64))
        }
        Some(_) => return Err("dynamic_batching must be a message".to_owned()),
        None => None,
    };
    let tensors = |field: &str| -> Result<Vec<Declared>, String> {
        config
            .all(field)
            .map(|t| {
                let Value::Message(t) = t else { return Err(format!("{field} must be a message")) };
                let name = t.text("name").ok_or_else(|| format!("an {field} has no name"))?.to_owned();
                let data_type = t.text("data_type").ok_or_else(|| format!("{field} `{name}` has no data_type"))?;
                let datatype: DataType = data_type.parse().map_err(|e| format!("{field} `{name}`: {e}"))?;
                let dims = t.all("dims").map(|d| number(d.text().unwrap_or(""), "dims")).collect::<Result<_, _>>()?;
                let format = t.text("format").map(str::to_owned);
                if let Some(format) = &format
                    && !["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"].contains(&format.as_str())
                {
                    return Err(format!(
                        "{field} `{name}`: format {format} is not valid; use FORMAT_NONE, FORMAT_NHWC or FORMAT_NCHW"
                    ));
                }
                let label_filename = t.text("label_filename").filter(|f| !f.is_empty()).map(str::to_owned);
                let labels = match &label_filename {
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
                Ok(Declared { name, datatype, dims, format, label_filename, labels })
            })
            .collect()
    };
    refuse_unsupported(config)?;
    let sequence = sequence_config(config)?;
    Ok(ServeConfig {
        platform: String::new(),
        max_batch_size: max_batch_size as usize,
        // A sequence model's calls go to their sequence's instance, one by one.
        batch_delay: batch_delay.filter(|_| max_batch_size > 0 && sequence.is_none()),
        inputs: tensors("input")?,
        outputs: tensors("output")?,
        sequence,
    })
}

mod overrides;

pub use overrides::{GivenFiles, LoadOverride, config_from_json, read_with};

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
            serve_config(&runtime_repository::pbtxt::parse(&text).expect("parses"), dir.path())
        };
        let good = config("label_filename: \"labels.txt\"").expect("loads");
        assert_eq!(good.outputs[0].labels, ["cat", "dog"]);
        assert_eq!(good.outputs[0].label_filename.as_deref(), Some("labels.txt"));
        assert_eq!(good.inputs[0].format.as_deref(), Some("FORMAT_NCHW"));
        let missing = config("label_filename: \"nope.txt\"").unwrap_err();
        assert!(missing.starts_with("output `y`: label_filename: cannot read "), "{missing}");
        assert_eq!(
            config("label_filename: \"../labels.txt\"").unwrap_err(),
            "output `y`: label_filename `../labels.txt` must name a file inside the model folder"
        );
    }

    #[test]
    fn files_given_with_a_load_live_in_a_private_folder_removed_after_it() {
        use std::os::unix::fs::PermissionsExt;
        let repo = tempfile::tempdir().expect("repo");
        let mut over = LoadOverride::default();
        over.config(r#"{"platform": "onnxruntime_onnx"}"#);
        over.file("file:1/model.onnx", b"bytes".to_vec());
        let (model, given) = read_with(repo.path(), "m", &over).expect("reads");
        let given = given.expect("files were written");
        let root = given.root().to_owned();
        let mode = std::fs::metadata(&root).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "only this user may enter the folder");
        assert!(root.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("corral-load-")));
        assert_eq!(model.versions.len(), 1);
        assert_eq!(model.versions[0].def.name, "m@1");
        let ModelSource::Onnx(file) = &model.versions[0].def.source else { panic!("an onnx model") };
        assert!(file.starts_with(&root), "{}", file.display());
        assert_eq!(std::fs::read(file).expect("written"), b"bytes");
        // Two loads never share a folder: the name is random, not a counter.
        let (_, other) = read_with(repo.path(), "m", &over).expect("reads");
        assert_ne!(other.expect("files").root(), root);
        drop(given);
        assert!(!root.exists(), "removed once the load is done");
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
