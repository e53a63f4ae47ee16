//! The server's view of a model repository: corral's `config.toml` (read by
//! `corral_runtime::repository`) and Triton's `config.pbtxt`, so that a Triton ONNX repository
//! serves unchanged.
//!
//! From `config.pbtxt` corral reads `name`, `platform`/`backend` (ONNX only),
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`), `instance_group`
//! (`count` replicas), `dynamic_batching { max_queue_delay_microseconds }`,
//! `default_model_filename`, and placement from `parameters` with keys `corral.cores` (K),
//! `corral.start`, `corral.count` (a number or `all`) and `corral.group`. Other fields are
//! accepted and ignored. When both files exist, placement and K come from `config.toml`.
//!
//! Model names are checked before any path is built: a name is a plain folder name of the
//! repository (letters, digits, `_`, `-`, `.`; not starting with `.`), so a request can never
//! make the server read outside it.

use std::{path::Path, time::Duration};

use corral_engine::{DataType, ModelSource};
use corral_runtime::{ModelDef, Where, repository as toml_repository};

use crate::pbtxt::{self, Message, Value};

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
    let pbtxt_path = dir.join("config.pbtxt");
    let pbtxt = match std::fs::read_to_string(&pbtxt_path) {
        Ok(text) => {
            Some(pbtxt::parse(&text).map_err(|e| RepoError::Invalid(format!("{}: {e}", pbtxt_path.display())))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(RepoError::Invalid(format!("{}: {e}", pbtxt_path.display()))),
    };
    let has_toml = dir.join("config.toml").is_file();
    let invalid = |e: toml_repository::RepositoryError| RepoError::Invalid(e.to_string());
    let Some(pbtxt) = pbtxt else {
        let def = toml_repository::read_model(&dir).map_err(invalid)?.ok_or_else(|| {
            RepoError::Invalid(format!("{}: holds no config.toml, config.pbtxt or <version>/model.onnx", dir.display()))
        })?;
        let platform = match def.source {
            ModelSource::Sim(_) => "corral_sim",
            ModelSource::Onnx(_) => "onnxruntime_onnx",
        };
        return Ok(RepoModel { def, config: ServeConfig { platform: platform.to_owned(), ..ServeConfig::default() } });
    };
    let bad = |reason: String| RepoError::Invalid(format!("{}: {reason}", pbtxt_path.display()));
    let (mut config, file) = from_pbtxt(&pbtxt).map_err(bad)?;
    let def = if has_toml {
        toml_repository::read_model(&dir).map_err(invalid)?.ok_or_else(|| bad("no model file".to_owned()))?
    } else {
        let path = toml_repository::latest_version(&dir, &file)
            .ok_or_else(|| bad(format!("no <version>/{file} found next to it (e.g. 1/{file})")))?;
        let k = parameter(&pbtxt, "corral.cores").map(|v| number(&v, "corral.cores")).transpose().map_err(bad)?;
        let k = k.unwrap_or(1) as usize;
        if k == 0 {
            return Err(bad("corral.cores = 0: a model needs at least 1 core per instance".to_owned()));
        }
        let replicas = replicas(&pbtxt).map_err(bad)?;
        let placement = placement(&pbtxt, k, replicas).map_err(bad)?;
        ModelDef { name: name.to_owned(), source: ModelSource::Onnx(path), cores_per_instance: k, placement }
    };
    if let ModelSource::Sim(_) = def.source {
        config.platform = "corral_sim".to_owned();
    }
    Ok(RepoModel { def, config })
}

fn number(text: &str, what: &str) -> Result<i64, String> {
    text.parse().map_err(|_| format!("{what}: `{text}` is not a whole number"))
}

fn text_of<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message.get(name).and_then(Value::text)
}

/// `parameters { key: "k" value { string_value: "v" } }`.
fn parameter(config: &Message, key: &str) -> Option<String> {
    config.all("parameters").find_map(|p| match p {
        Value::Message(p) if text_of(p, "key") == Some(key) => match p.get("value") {
            Some(Value::Message(v)) => text_of(v, "string_value").map(str::to_owned),
            _ => None,
        },
        _ => None,
    })
}

fn replicas(config: &Message) -> Result<Option<usize>, String> {
    let mut total = None;
    for group in config.all("instance_group") {
        let Value::Message(group) = group else { return Err("instance_group must be a message".to_owned()) };
        let count = text_of(group, "count").map(|c| number(c, "instance_group count")).transpose()?.unwrap_or(1);
        if count < 1 {
            return Err(format!("instance_group count {count} is not valid; use 1 or more"));
        }
        if let Some(kind) = text_of(group, "kind")
            && !matches!(kind, "KIND_CPU" | "KIND_AUTO" | "KIND_MODEL")
        {
            return Err(format!("instance_group kind {kind} is not served by corral; use KIND_CPU"));
        }
        *total.get_or_insert(0) += count as usize;
    }
    Ok(total)
}

fn placement(config: &Message, k: usize, replicas: Option<usize>) -> Result<Option<Where>, String> {
    let start = parameter(config, "corral.start").map(|s| number(&s, "corral.start")).transpose()?;
    let count = parameter(config, "corral.count");
    let group = parameter(config, "corral.group").map(|s| number(&s, "corral.group")).transpose()?;
    if group.is_some() && (start.is_some() || count.is_some()) {
        return Err("corral.group cannot be combined with corral.start or corral.count".to_owned());
    }
    if let Some(group) = group {
        return Ok(Some(Where::Group(group.max(0) as usize)));
    }
    let count = match count.as_deref() {
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

fn from_pbtxt(config: &Message) -> Result<(ServeConfig, String), String> {
    let platform = text_of(config, "platform").unwrap_or_default();
    let backend = text_of(config, "backend").unwrap_or_default();
    let onnx = matches!(platform, "onnxruntime_onnx" | "onnx" | "") && matches!(backend, "onnxruntime" | "onnx" | "");
    if !onnx {
        return Err(format!(
            "platform `{platform}` / backend `{backend}` is not served by corral; use platform \"onnxruntime_onnx\" or backend \"onnxruntime\""
        ));
    }
    let max_batch_size = text_of(config, "max_batch_size").map(|t| number(t, "max_batch_size")).transpose()?;
    let max_batch_size = max_batch_size.unwrap_or(0);
    if max_batch_size < 0 {
        return Err(format!("max_batch_size {max_batch_size} is not valid; use 0 or more"));
    }
    let batch_delay = match config.get("dynamic_batching") {
        Some(Value::Message(batching)) => {
            let micros = text_of(batching, "max_queue_delay_microseconds")
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
                let name = text_of(t, "name").ok_or_else(|| format!("an {field} has no name"))?.to_owned();
                let data_type = text_of(t, "data_type").ok_or_else(|| format!("{field} `{name}` has no data_type"))?;
                let datatype: DataType = data_type.parse().map_err(|e| format!("{field} `{name}`: {e}"))?;
                let dims = t.all("dims").map(|d| number(d.text().unwrap_or(""), "dims")).collect::<Result<_, _>>()?;
                Ok(Declared { name, datatype, dims })
            })
            .collect()
    };
    let file = text_of(config, "default_model_filename").unwrap_or("model.onnx").to_owned();
    if file.contains('/') || file.starts_with('.') {
        return Err(format!("default_model_filename `{file}` must be a plain file name"));
    }
    let serve = ServeConfig {
        platform: "onnxruntime_onnx".to_owned(),
        max_batch_size: max_batch_size as usize,
        batch_delay: batch_delay.filter(|_| max_batch_size > 0),
        inputs: tensors("input")?,
        outputs: tensors("output")?,
    };
    Ok((serve, file))
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
