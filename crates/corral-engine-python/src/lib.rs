//! Triton's Python backend: a `model.py` whose `TritonPythonModel` runs in a Python stub
//! process of its own per instance, pinned to the instance's cores, so no instance waits on
//! another's interpreter lock.
//!
//! The stub (`_stub.py`) and `triton_python_backend_utils.py` are corral's Python package's
//! own files, compiled into this crate and written, once per corral version, into a private
//! folder (`$TMPDIR/corral-python-<uid>-<version>`, mode 0700, checked to be the user's) that
//! goes first on the stub's `PYTHONPATH`: any Python ≥ 3.10 with numpy runs them, corral
//! installed or not. The interpreter is the model's own environment's (Triton's
//! `EXECUTION_ENV_PATH` parameter, config.toml's `[python] env`: `environment.rs`), else
//! `CORRAL_PYTHON`, else the first `python3` on `PATH`; the model's log line names it.
//!
//! At load, `auto_complete_config` runs in a throw-away interpreter (as Triton calls it once),
//! and the completed configuration gives the model's inputs and outputs. Each session then
//! starts a stub through one long-lived spawner thread (so the stub's parent-death signal,
//! tied to the thread that forked it, fires only when the server process ends), with the
//! channel on its descriptor 3 (`channel.rs`), its stdout and stderr forwarded to the server's
//! stderr line by line under the instance's name, and the instance's CPUs as its affinity.
//!
//! An `execute` silent past the model's execute timeout (60 s unless configured) has its stub
//! killed; a stub that died or was killed fails the call it held, naming model, instance and
//! cause, and is started again (and `initialize`d) at once in the background, the instance's
//! next call waiting for it; a start that fails is tried again at a later call, no sooner than
//! a backoff of 0.5 s doubling to 30 s. The model reports not ready while no instance can take
//! a call (`Sessions::can_take_calls`).
//!
//! BLS: a stub's `InferenceRequest.exec`/`async_exec` is a `call` frame on the channel while
//! its `execute` runs; the session's thread hands it to the [`Calls`] the server attached
//! (corral's runtime, no network hop), and each answer goes back as an `answer` frame with the
//! call's id, written by whichever thread finished the call, so a model's concurrent
//! `async_exec` calls run at once.
//!
//! Decoupled models: a request sent for streaming (`Session::run_streaming`) reaches the
//! stub's `execute` with a response sender whose every `send` is a `response` frame, handed
//! to the server as it comes; `executed` says `execute` returned, and the request ends once
//! both it and the final flag came (a thread of the model may send after `execute` returned).
//!
//! Custom metrics (`pb_utils.MetricFamily`): each change is a `metric` frame, read whenever
//! the channel is (`metrics.rs` keeps them), shown on the server's metrics port.
//!
//! An execute's numeric tensors cross a shared buffer (`channel::Shared`: a memfd of 64 MiB,
//! sealed against shrinking and growing, on the stub's descriptor 4), so no `/dev/shm` size
//! has to be set; the rest crosses the socket.
//!
//! A dynamic batch (`Session::run_parts`) reaches `execute` as one request per call, each a
//! view of its rows; the responses' outputs go back concatenated, and an error response fails
//! its own call alone (`PartsOutput::failed`).

mod channel;
mod environment;
mod metrics;
mod stub;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
};

use corral_cores::sync::lock;

use corral_engine::{Calls, DataType, Engine, EngineError, ModelSource, Prepared, PythonModel, TensorSpec};
use serde_json::Value;

pub use stub::{Instance, Stub};

/// The environment variable naming the interpreter.
pub const PYTHON_ENV: &str = "CORRAL_PYTHON";

/// The stub's files, as corral's Python package ships them.
const STUB: &str = include_str!("../../corral-py/python/corral/_stub.py");
const PB_UTILS: &str = include_str!("../../corral-py/python/corral/pb_utils.py");

/// Runs `model.py` models.
pub struct PythonEngine {
    interpreter: PathBuf,
    /// Where the models' BLS calls go: set once, when the server attaches itself.
    calls: Arc<OnceLock<Arc<dyn Calls>>>,
}

impl PythonEngine {
    /// The interpreter `CORRAL_PYTHON` names, else `python3` (found on `PATH` when it runs).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> PythonEngine {
        let interpreter = lookup(PYTHON_ENV).filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned());
        PythonEngine { interpreter: PathBuf::from(interpreter), calls: Arc::default() }
    }

    pub fn interpreter(&self) -> &Path {
        &self.interpreter
    }
}

impl Engine for PythonEngine {
    fn name(&self) -> &'static str {
        "python"
    }

    fn attach(&self, calls: Arc<dyn Calls>) {
        let _ = self.calls.set(calls);
    }

    fn metrics(&self) -> String {
        metrics::render()
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let ModelSource::Python(model) = source else {
            return Err(EngineError::Unsupported { engine: "python", reason: "only model.py models".to_owned() });
        };
        let load_error = |reason: String| EngineError::Load { path: model.model_py.clone(), reason };
        let folder = stub_folder().map_err(load_error)?;
        // The model's own environment (EXECUTION_ENV_PATH), else the engine's interpreter.
        let read: Value =
            serde_json::from_str(&model.config_json).map_err(|e| load_error(format!("its configuration: {e}")))?;
        let (env, interpreter) = match environment::named(&read, &model.repository) {
            Some(path) => {
                let (env, interpreter) = environment::resolve(&path).map_err(load_error)?;
                (Some(env), interpreter)
            }
            None => (None, self.interpreter.clone()),
        };
        let config: Value = if model.auto_complete {
            stub::auto_complete(&interpreter, env.as_deref(), &folder, model).map_err(load_error)?
        } else {
            read
        };
        let (inputs, outputs) = signature(&config).map_err(load_error)?;
        tracing::info!(model = %model.name, "Python interpreter {}", interpreter.display());
        let spawn = stub::Spawn {
            interpreter,
            env,
            folder,
            model: PythonModel { config_json: config.to_string(), ..model.clone() },
            calls: self.calls.clone(),
        };
        let sessions = Stubs { count: AtomicUsize::new(0), spawn: Arc::new(spawn), states: Mutex::new(Vec::new()) };
        let completed = config.to_string();
        Ok(Arc::new(Prepared::new(inputs, outputs, sessions).completed(completed)))
    }
}

/// A model's instances: each started with its stub; each instance's state kept (weakly, so a
/// retired instance drops out) to tell whether one can take a call.
struct Stubs {
    count: AtomicUsize,
    spawn: Arc<stub::Spawn>,
    states: Mutex<Vec<Weak<Mutex<stub::Down>>>>,
}

impl corral_engine::Sessions for Stubs {
    fn session(
        &self,
        placement: &corral_engine::SessionPlacement,
    ) -> Result<Box<dyn corral_engine::Session>, EngineError> {
        let index = self.count.fetch_add(1, Ordering::Relaxed);
        let instance = Instance::start(self.spawn.clone(), index, placement.core_cpus.concat())?;
        let mut states = lock(&self.states);
        states.retain(|s| s.strong_count() > 0);
        states.push(Arc::downgrade(instance.down()));
        Ok(Box::new(instance))
    }

    fn moves_live(&self) -> bool {
        true
    }

    fn can_take_calls(&self) -> bool {
        let now = std::time::Instant::now();
        let states = lock(&self.states);
        let live: Vec<_> = states.iter().filter_map(Weak::upgrade).collect();
        live.is_empty() || live.iter().any(|s| lock(s).until.is_none_or(|until| until <= now))
    }
}

/// The private folder holding the stub's files for this corral version, written when absent
/// or different.
fn stub_folder() -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let folder = std::env::temp_dir().join(format!("corral-python-{uid}-{}", env!("CARGO_PKG_VERSION")));
    match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make the stub's folder {}: {e}", folder.display())),
    }
    let meta = std::fs::symlink_metadata(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a private folder of this user (it holds the Python stub corral runs)\nhint: remove it",
            folder.display()
        ));
    }
    for (name, text) in [("_stub.py", STUB), ("triton_python_backend_utils.py", PB_UTILS)] {
        let path = folder.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        // Written beside and renamed, so another process never runs half a file.
        let partial = folder.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(folder)
}

/// A configuration's inputs and outputs (protobuf's JSON mapping: `data_type` by name, `dims`
/// as numbers or strings); a batching model's tensors gain a leading dynamic dimension.
pub fn signature(config: &Value) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), String> {
    let batch = config.get("max_batch_size").and_then(number).unwrap_or(0) > 0;
    let tensors = |kind: &str| -> Result<Vec<TensorSpec>, String> {
        let list = config.get(kind).and_then(Value::as_array).cloned().unwrap_or_default();
        list.iter()
            .map(|t| {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| format!("an {kind} has no name"))?;
                let data_type = t.get("data_type").and_then(Value::as_str).unwrap_or("TYPE_INVALID");
                let datatype = datatype(data_type)
                    .ok_or_else(|| format!("{kind} '{name}': data_type {data_type} is not one corral serves"))?;
                let dims = t.get("dims").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut shape: Vec<i64> =
                    dims.iter().map(number).collect::<Option<_>>().ok_or_else(|| format!("{kind} '{name}': dims"))?;
                if batch {
                    shape.insert(0, -1);
                }
                Ok(TensorSpec::new(name, datatype, shape))
            })
            .collect()
    };
    let (inputs, outputs) = (tensors("input")?, tensors("output")?);
    if outputs.is_empty() {
        return Err(
            "the configuration declares no output (neither config.pbtxt nor auto_complete_config gives one)".to_owned()
        );
    }
    Ok((inputs, outputs))
}

fn number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.parse().ok())
}

fn datatype(triton: &str) -> Option<DataType> {
    let name = triton.strip_prefix("TYPE_")?;
    if name == "STRING" {
        return Some(DataType::Bytes);
    }
    // numpy has no bfloat16: a Python model cannot take or give one.
    if name == "BF16" {
        return None;
    }
    DataType::ALL.iter().copied().find(|d| d.kserve_name() == name && *d != DataType::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_gives_the_signature_batch_dimension_included() {
        let config = serde_json::json!({
            "max_batch_size": 8,
            "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": ["3", 4]}],
            "output": [{"name": "OUT", "data_type": "TYPE_STRING", "dims": [1]}],
        });
        let (inputs, outputs) = signature(&config).expect("a signature");
        assert_eq!(inputs, vec![TensorSpec::new("IN", DataType::F32, vec![-1, 3, 4])]);
        assert_eq!(outputs, vec![TensorSpec::new("OUT", DataType::Bytes, vec![-1, 1])]);
        let bad = serde_json::json!({"output": [{"name": "OUT", "data_type": "TYPE_COMPLEX", "dims": [1]}]});
        assert_eq!(signature(&bad).unwrap_err(), "output 'OUT': data_type TYPE_COMPLEX is not one corral serves");
        assert!(signature(&serde_json::json!({})).unwrap_err().contains("declares no output"));
    }
}
