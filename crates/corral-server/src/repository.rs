//! The server's view of a model repository: the model folder is read by
//! `corral_runtime::repository` (corral's `config.toml` or Triton's `config.pbtxt`, placement
//! included), and this module adds what only a server needs from `config.pbtxt`:
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`) and
//! `dynamic_batching { max_queue_delay_microseconds }`. Other fields are accepted and ignored.
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
}

/// One model as the repository describes it.
#[derive(Clone, Debug)]
pub struct RepoModel {
    pub def: ModelDef,
    pub config: ServeConfig,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RepoError {
    #[error(
        "`{0}` is not a valid model name: use letters, digits, `_`, `-` and `.` (not first), at most 128 characters"
    )]
    BadName(String),
    #[error("no model named `{0}` in the repository")]
    NotFound(String),
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
        Some(pbtxt) => serve_config(pbtxt)
            .map_err(|reason| RepoError::Invalid(format!("{}: {reason}", dir.join("config.pbtxt").display())))?,
        None => ServeConfig::default(),
    };
    config.platform = match folder.def.source {
        ModelSource::Sim(_) => "corral_sim",
        ModelSource::Onnx(_) => "onnxruntime_onnx",
    }
    .to_owned();
    Ok(RepoModel { def: folder.def, config })
}

/// Triton's serving fields of a `config.pbtxt` whose model the runtime's reader accepted.
fn serve_config(config: &Message) -> Result<ServeConfig, String> {
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
                Ok(Declared { name, datatype, dims })
            })
            .collect()
    };
    Ok(ServeConfig {
        platform: String::new(),
        max_batch_size: max_batch_size as usize,
        batch_delay: batch_delay.filter(|_| max_batch_size > 0),
        inputs: tensors("input")?,
        outputs: tensors("output")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
