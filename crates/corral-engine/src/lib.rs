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

use std::{path::PathBuf, sync::Arc};

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

/// A model artifact as the runtime hands it to an engine.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    Onnx(PathBuf),
    Sim(SimModel),
}

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
}

/// A model parsed by an engine, shared by its instances: what it takes and gives, and the
/// engine's way of making each instance's session.
pub struct Prepared {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    sessions: Box<dyn Sessions>,
}

impl Prepared {
    pub fn new(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>, sessions: impl Sessions + 'static) -> Prepared {
        Prepared { inputs, outputs, sessions: Box::new(sessions) }
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
    pub fn chosen(&self) -> Option<(String, String)> {
        self.sessions.chosen()
    }
}

/// How an engine makes the sessions of one prepared model (what it parsed, shared by them).
pub trait Sessions: Send + Sync {
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError>;

    /// See [`Prepared::chosen`].
    fn chosen(&self) -> Option<(String, String)> {
        None
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
}
