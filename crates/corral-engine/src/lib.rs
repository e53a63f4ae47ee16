//! Tensors, the engine trait trio, and the simulated engine.
//!
//! An engine turns a model artifact into a [`Prepared`] model (parsed once, shared by every
//! replica: one copy of the weights where the backend allows): its signature, kept here once
//! for every engine, and the engine's [`Sessions`], which make one [`Session`] per instance,
//! placed on that instance's cores; a session runs one inference at a time.
//! The runtime owns scheduling: an engine never decides where or when it runs.

mod datatype;
pub mod library;
mod sim;
mod spec;
mod strings;
mod tensor;
mod wire;

use std::{path::PathBuf, sync::Arc, time::Duration};

pub use datatype::DataType;
pub use sim::{SimEngine, SimModel};
pub use spec::{InputError, TensorSpec, sample_inputs, validate_inputs};
pub use strings::{Strings, StringsView};
pub use tensor::{Element, SharedData, Tensor, TensorData, TensorView, bf16, f16};
pub use wire::WireError;

/// Where one instance's session runs: for each of its K cores, the host CPUs behind it
/// (empty on simulated devices).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionPlacement {
    pub core_cpus: Vec<Vec<usize>>,
}

impl SessionPlacement {
    /// K, the number of cores of the instance.
    pub fn cores(&self) -> usize {
        self.core_cpus.len()
    }
}

/// What an engine that chooses among others (`auto`) chose for a model, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineChoice {
    /// The engine's name: `onnxruntime`, `openvino`.
    pub engine: String,
    pub reason: String,
    /// Each engine timed, with its median at batch 1 (empty when they were not timed).
    pub medians: Vec<(String, Duration)>,
}

/// A model artifact as the runtime hands it to an engine.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    Onnx(PathBuf),
    Sim(SimModel),
    /// A Triton Python model (`model.py`), for the Python engine.
    Python(PythonModel),
}

/// A Triton Python model: its `model.py`, its configuration as JSON (Triton's `ModelConfig`
/// in protobuf's JSON mapping, what `initialize` gets as `args["model_config"]`), and what
/// Triton tells `initialize` of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PythonModel {
    pub model_py: PathBuf,
    pub config_json: String,
    pub name: String,
    pub version: String,
    /// The model's folder (Triton's `model_repository` key names it, not the repository).
    pub repository: PathBuf,
    /// Call the model's `auto_complete_config` at load (Triton's default; off with
    /// `--disable-auto-complete-config`).
    pub auto_complete: bool,
    /// How long `execute` may run before its stub is killed and started again (`None`: no
    /// bound); config.toml `[python] execute_timeout_s`, `corral.python.execute_timeout_s`.
    pub execute_timeout: Option<std::time::Duration>,
}

/// A Python model's default execute timeout.
pub const PYTHON_EXECUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("cannot load {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("{engine} cannot run this kind of model: {reason}")]
    Unsupported { engine: &'static str, reason: String },
    #[error("cannot create a session: {0}")]
    Session(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("inference failed: {0}")]
    Run(String),
}

/// A backend: ONNX Runtime, tract, or the simulator.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    /// Parses and checks the model once; replicas share the result.
    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError>;
    /// Where this engine's models send their calls to other models (Triton's BLS): the
    /// server attaches itself once it runs. Engines whose models make no calls ignore it.
    fn attach(&self, _calls: Arc<dyn Calls>) {}
    /// The metrics its models made themselves (a Python model's `MetricFamily`), in
    /// Prometheus' text format.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// A call one model makes to another while it runs (Triton's BLS: `InferenceRequest.exec`
/// in a `model.py`), as the engine hands it to whoever serves the models.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallRequest {
    pub model: String,
    /// Empty: the highest ready version.
    pub version: String,
    pub id: String,
    pub inputs: Vec<Tensor>,
    /// Empty: every output.
    pub outputs: Vec<String>,
    /// The sequence's correlation id (0 or empty: none), as a number or a string.
    pub correlation_id: Option<String>,
    /// Triton's request flags (1: sequence start, 2: sequence end).
    pub flags: u32,
    /// The caller takes several responses (`exec(decoupled=True)`): a decoupled target's
    /// come as it sends them; a call without it to a decoupled model is Triton's error.
    pub decoupled: bool,
}

/// Why a call to another model failed: Triton's error code name (`NOT_FOUND`,
/// `INVALID_ARG`, `UNAVAILABLE`, `INTERNAL`, ...) and its message.
#[derive(Clone, Debug, PartialEq)]
pub struct CallFailure {
    pub code: &'static str,
    pub message: String,
}

/// One answer of a call: its outputs, or its error; `last` is false while more responses of
/// the same call follow (a decoupled model's).
#[derive(Clone, Debug, PartialEq)]
pub struct CallAnswer {
    pub result: Result<Vec<Tensor>, CallFailure>,
    pub last: bool,
}

/// Where a decoupled model's responses go as it sends them (each a [`CallAnswer`], the last
/// with `last` set; an empty last one is the bare final flag).
pub type Responses = Box<dyn FnMut(CallAnswer) + Send>;

/// What a batch of several requests ([`Session::run_parts`]) gave: the outputs of the requests
/// that succeeded, their rows in order; and, when any failed, each request's error (`None`:
/// it succeeded), one per part. Empty `failed`: every request succeeded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartsOutput {
    pub outputs: Vec<Tensor>,
    pub failed: Vec<Option<String>>,
}

/// Model control asked by a running model (python_backend's `load_model`, `unload_model`,
/// `is_model_ready`).
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Loads (or reloads) `model`, with a configuration (JSON) and files (`1/model.onnx` and
    /// its bytes) given in place of the repository's when not empty.
    Load { model: String, config: String, files: Vec<(String, Vec<u8>)> },
    /// Unloads `model`, and with `dependents` the models an ensemble loaded along with it.
    Unload { model: String, dependents: bool },
    /// Whether `model` (`version`, empty: any) is ready.
    Ready { model: String, version: String },
}

/// Who asks for a [`Control`]: the model's name, and whether from its `initialize` or
/// `finalize` (run by the server's load or unload of that model, which holds its model control
/// meanwhile).
#[derive(Clone, Debug, PartialEq)]
pub struct Asker {
    pub model: String,
    pub inside_control: bool,
}

/// Whoever serves the models, as a model's calls reach them: `call` runs `request` without
/// blocking and hands each answer to `answer`, from any thread, the last with `last` set;
/// `control` runs `request` without blocking and hands its outcome (for `Ready`, the
/// readiness; else `true`) to `answer`.
pub trait Calls: Send + Sync {
    fn call(&self, request: CallRequest, answer: Box<dyn FnMut(CallAnswer) + Send>);
    fn control(&self, asker: Asker, request: Control, answer: Box<dyn FnOnce(Result<bool, CallFailure>) + Send>);
}

/// A model parsed by an engine, shared by its instances: what it takes and gives, and the
/// engine's way of making each instance's session.
pub struct Prepared {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    sessions: Box<dyn Sessions>,
    /// The model's configuration as its engine completed it (Triton's JSON mapping), where
    /// the engine completes one (a Python model's `auto_complete_config`).
    completed: Option<String>,
}

impl Prepared {
    pub fn new(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>, sessions: impl Sessions + 'static) -> Prepared {
        Prepared { inputs, outputs, sessions: Box::new(sessions), completed: None }
    }

    /// With the configuration its engine completed ([`Prepared::completed_config`]).
    pub fn completed(mut self, config_json: String) -> Prepared {
        self.completed = Some(config_json);
        self
    }

    /// The model's configuration as its engine completed it (Triton's JSON mapping): what a
    /// server reports and checks requests against in place of the one it read.
    pub fn completed_config(&self) -> Option<&str> {
        self.completed.as_deref()
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// Makes the session of one instance, to run on `placement`'s cores.
    pub fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        self.sessions.session(placement)
    }

    /// The engine chosen for this model (its name) and why, where one engine chooses among
    /// others (`auto`), once it has.
    pub fn chosen(&self) -> Option<EngineChoice> {
        self.sessions.chosen()
    }

    /// Whether the next session first runs the model on its placement's cores to time it
    /// (`auto`, before it has chosen): its caller holds those cores meanwhile, through the
    /// scheduler, so the timing never overlaps another model's calls there.
    pub fn measures(&self) -> bool {
        self.sessions.measures()
    }

    /// Whether one of the sessions made can take a call now: false only while every one is
    /// down and not yet allowed back (a Python model's stubs, dead and waiting out their
    /// restart's backoff). A model whose sessions cannot fail this way always can.
    pub fn can_take_calls(&self) -> bool {
        self.sessions.can_take_calls()
    }

    /// Whether its live sessions can move to other cores ([`Session::repin`]): a runtime
    /// asks them only then, else starts a new session there.
    pub fn moves_live(&self) -> bool {
        self.sessions.moves_live()
    }
}

/// How an engine makes the sessions of one prepared model (what it parsed, shared by them).
pub trait Sessions: Send + Sync {
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError>;

    /// See [`Prepared::chosen`].
    fn chosen(&self) -> Option<EngineChoice> {
        None
    }

    /// See [`Prepared::measures`].
    fn measures(&self) -> bool {
        false
    }

    /// See [`Prepared::can_take_calls`].
    fn can_take_calls(&self) -> bool {
        true
    }

    /// See [`Prepared::moves_live`].
    fn moves_live(&self) -> bool {
        false
    }
}

impl<F> Sessions for F
where
    F: Fn(&SessionPlacement) -> Result<Box<dyn Session>, EngineError> + Send + Sync,
{
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        self(placement)
    }
}

/// One instance's executor. Called from one thread at a time.
pub trait Session: Send {
    /// Runs one inference on inputs already validated against [`Prepared::inputs`].
    /// `switched` is true when one of the instance's cores last ran another model.
    fn run(&mut self, inputs: &[Tensor], switched: bool) -> Result<Vec<Tensor>, EngineError>;

    /// [`Session::run`], able to give the instance's cores back while it waits on other
    /// models (`cores`): a session whose model calls models (BLS) lends them from its first
    /// call until its execution ends.
    fn run_lending(
        &mut self,
        inputs: &[Tensor],
        switched: bool,
        cores: &mut dyn CoreLoan,
    ) -> Result<Vec<Tensor>, EngineError> {
        let _ = cores;
        self.run(inputs, switched)
    }

    /// Runs a batch made of several requests (their first dimension's `parts`, in order): an
    /// engine that runs the batch as one ignores them; a Python model's `execute` gets each
    /// request as its own, as Triton hands a dynamically batched model several requests, and
    /// one request's error response fails that request alone ([`PartsOutput::failed`]).
    fn run_parts(
        &mut self,
        inputs: &[Tensor],
        parts: &[usize],
        switched: bool,
        cores: &mut dyn CoreLoan,
    ) -> Result<PartsOutput, EngineError> {
        let _ = parts;
        self.run_lending(inputs, switched, cores).map(|outputs| PartsOutput { outputs, failed: Vec::new() })
    }

    /// Runs a decoupled model's request: its responses go to `responses` as the model sends
    /// them, the last with `last` set, before this returns. A session whose models answer once
    /// sends its one answer as the last.
    fn run_streaming(
        &mut self,
        inputs: &[Tensor],
        switched: bool,
        cores: &mut dyn CoreLoan,
        responses: &mut dyn FnMut(CallAnswer),
    ) -> Result<(), EngineError> {
        let outputs = self.run_lending(inputs, switched, cores)?;
        responses(CallAnswer { result: Ok(outputs), last: true });
        Ok(())
    }

    /// Moves the live session to `placement`'s cores, called by its worker between calls (the
    /// worker re-pins itself): true when it did, so the instance keeps running as it is; false
    /// when this session cannot move (the runtime then starts a new instance there and retires
    /// this one). A Python model's session re-pins every thread of its stub, so a move costs no
    /// second process and no second `initialize`.
    fn repin(&mut self, placement: &SessionPlacement) -> Result<bool, EngineError> {
        let _ = placement;
        Ok(false)
    }
}

/// The cores an execution holds, as a session may lend them while it waits on other models.
pub trait CoreLoan {
    /// Gives them back for now (nothing when already lent).
    fn lend(&mut self);
    /// Takes them again, waiting for them (nothing when not lent).
    fn reclaim(&mut self);
}
