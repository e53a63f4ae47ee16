//! corral's runtime: a process's cores, the models placed on them, and inference calls that
//! any number of threads make at once. This is the public Rust API.
//!
//! A [`Runtime`] takes this process's cores once (from the environment, flags, or an
//! inherited lease; see `corral-cores`), then [`Runtime::load`]s models onto them. Each
//! instance (replica) gets a worker thread that owns its engine session; a [`Model`] handle
//! dispatches calls round-robin over its instances, skipping busy ones, and the
//! [`scheduler`] makes each execution hold all cores of its instance and never two things on
//! one core. Placement follows Neuron's rules, including scoped contexts, which here are per
//! thread.
//!
//! ```
//! use corral_runtime::{Runtime, RuntimeSettings, ModelDef, cores_context, multicore_context};
//! use corral_engine::{DataType, SimModel, Tensor, TensorSpec};
//! use std::time::Duration;
//!
//! # let dir = tempfile::tempdir()?;
//! let mut settings = RuntimeSettings::default();
//! settings.take.device = Some("sim:4".parse()?); // as if NEURON_RT_NUM_CORES=4 on an inf1.xlarge
//! settings.take.lock_dir = Some(dir.path().to_owned());
//! let runtime = Runtime::new(settings)?;
//!
//! let tiny = SimModel {
//!     inputs: vec![TensorSpec::new("x", DataType::F32, vec![1, 4])],
//!     outputs: vec![TensorSpec::new("y", DataType::F32, vec![1, 2])],
//!     latency: Duration::from_millis(1),
//!     switch: Duration::ZERO,
//! };
//! let m0 = {
//!     let _ctx = cores_context(3, -1)?; // start_nc=3
//!     runtime.load(ModelDef::sim("m0", tiny.clone()))?
//! };
//! let m1 = {
//!     let _ctx = cores_context(0, 2)?; // replicas on nc0 and nc1
//!     runtime.load(ModelDef::sim("m1", tiny.clone()))?
//! };
//! let x = || vec![Tensor::zeros_like(&tiny.inputs[0])];
//! assert_eq!(m0.infer(x())?.cores.first, 3);
//! assert_eq!(m1.infer(x())?.cores.first, 0);
//! assert_eq!(m1.infer(x())?.cores.first, 1);
//! assert_eq!(m1.stats().executions, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod autopilot;
mod context;
mod error;
mod limits;
mod loaded;
mod model;
// Public for `corral bench --rate` and the CLI's benchmarks: see its module doc for why it is here.
pub mod open_loop;
mod periodic;
mod publish;
pub mod repository;
mod runtime;
pub mod scheduler;
mod settings;
mod stats;
mod timeline;
mod wait;
mod worker;

pub use context::{PlacementContext, cores_context, group_context, multicore_context};
pub use corral_cores::sync;
/// The autopilot's view of a model ([`Model::bounds`], [`Model::autopilot_view`]), the same
/// types the planner's simulator builds.
pub use corral_dispatch::autopilot::{Bounds, Demand, InstanceView, ModelView};
/// How many times a call picks a replica at most, a move (SPEC §11) under it: for a front end
/// that picks instances itself (a server's sequences), as the runtime's calls do.
pub use corral_dispatch::replica::PICKS_MAX;
pub use corral_placement::{CoreSpan, Layout, PlacementError, Where};
pub use error::{InferError, LoadError, RuntimeError};
pub use loaded::CoreStats;
pub use model::Model;
pub use runtime::{ModelDef, Replacement, Runtime};
pub use settings::{
    AUTOPILOT_ENV, AUTOPILOT_INTERVAL_DEFAULT, AUTOPILOT_INTERVAL_ENV, EXEC_TIMEOUT_DEFAULT, EXEC_TIMEOUT_ENV,
    RuntimeSettings, SettingError, autopilot_from, autopilot_interval_from, exec_timeout_from,
};
pub use stats::{InstanceStats, ModelStats};
pub use timeline::TimelineEvent;
pub use worker::{Inference, Reply};
