//! What both protocols share: the table of loaded models, their Triton-style counters,
//! readiness, and the running of a call on a model (its sequence, its batch) with its error
//! mapping.
//!
//! Counters belong to a model *name* and live as long as the server, across unloads and
//! reloads, so that metrics always add up to what clients saw.
//!
//! Versions (SPEC §8): every version a model's `version_policy` selects is served, each a
//! runtime model of its own named `NAME@V` with its own instances, batcher, sequences and
//! counters; a call without a version goes to the highest loaded one, a call for a version
//! that is not loaded gets Triton's error.
//!
//! Model control (load, reload, unload, the repository index) and its reload protocol are
//! `state/reload.rs`.

use corral_runtime::sync::lock;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Instant, SystemTime},
};

use corral_engine::Tensor;
use corral_runtime::sync;
use corral_runtime::{Inference, Model, Runtime};

use crate::{
    batcher::Batcher,
    counters::Counters,
    error::{CallError, ErrorKind},
    repository::{Declared, ServeConfig},
    sequence::{SequenceParams, Sequencer},
    triton,
};

mod reload;

/// How models get loaded, as Triton's `--model-control-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMode {
    /// Everything in the repository at start; the repository API cannot load or unload.
    None,
    /// Only `--load-model` at start, then what the repository API asks.
    Explicit,
}

/// A loaded version of a model, as served.
pub struct Served {
    pub name: String,
    /// The version's number, as protocols show it.
    pub version: String,
    pub number: u64,
    /// What runs its calls: a runtime model, or an ensemble's steps.
    pub unit: Unit,
    pub config: ServeConfig,
    pub counters: Arc<Counters>,
    /// What the version was loaded from (definition, configuration, model file's size and
    /// time); a reload that finds the same keeps the version serving untouched.
    fingerprint: String,
    batcher: Option<Batcher>,
    sequencer: Option<Sequencer>,
}

/// A model's loaded versions, by number.
type Versions = BTreeMap<u64, Arc<Served>>;

/// What runs a served version's calls.
pub enum Unit {
    /// A runtime model, on its instances' cores.
    Model(Model),
    /// An ensemble: no cores of its own, its steps' models run it.
    Ensemble(Arc<crate::ensemble::Plan>),
}

impl Served {
    /// The runtime model; `None` for an ensemble.
    pub fn model(&self) -> Option<&Model> {
        match &self.unit {
            Unit::Model(model) => Some(model),
            Unit::Ensemble(_) => None,
        }
    }

    pub fn ensemble(&self) -> Option<&Arc<crate::ensemble::Plan>> {
        match &self.unit {
            Unit::Model(_) => None,
            Unit::Ensemble(plan) => Some(plan),
        }
    }

    /// Whether its own instances can take a call now: false while every one is down (a
    /// Python model's stubs starting again). An ensemble has none: [`ServerState::ready`]
    /// asks its steps.
    pub fn can_take_calls(&self) -> bool {
        self.model().is_none_or(Model::can_take_calls)
    }

    /// Its tensors as clients see them (metadata, the configuration, request checks, an
    /// ensemble's load): the `declared` ones, else the engine's signature (`engine`); `shape`
    /// with the batch dimension (`-1`) first when the model batches.
    pub fn views(&self, declared: &[Declared], engine: &[corral_engine::TensorSpec]) -> Vec<corral_engine::TensorSpec> {
        let batched = self.config.max_batch_size > 0;
        if declared.is_empty() {
            return engine
                .iter()
                .map(|spec| {
                    let mut shape = spec.shape.clone();
                    if batched && let Some(first) = shape.first_mut() {
                        *first = -1;
                    }
                    corral_engine::TensorSpec::new(spec.name.clone(), spec.datatype, shape)
                })
                .collect();
        }
        declared
            .iter()
            .map(|d| {
                let dims = &d.spec.shape;
                let shape =
                    if batched { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.clone() };
                corral_engine::TensorSpec::new(d.spec.name.clone(), d.spec.datatype, shape)
            })
            .collect()
    }

    /// Its tensors as its model (or the ensemble's configuration) gives them.
    pub fn input_specs(&self) -> &[corral_engine::TensorSpec] {
        match &self.unit {
            Unit::Model(model) => model.inputs(),
            Unit::Ensemble(plan) => &plan.inputs,
        }
    }

    pub fn output_specs(&self) -> &[corral_engine::TensorSpec] {
        match &self.unit {
            Unit::Model(model) => model.outputs(),
            Unit::Ensemble(plan) => &plan.outputs,
        }
    }

    /// A place in this model's forming batch for a REST body whose tensor bytes are `len`,
    /// when it batches and qualifies (`slab.rs`); its own calls only (a sequence model's are
    /// not dynamically batched).
    pub fn body_slot(&self, len: usize) -> Option<crate::slab::Slot> {
        if self.sequencer.is_some() {
            return None;
        }
        self.batcher.as_ref()?.slot(len)
    }

    /// The batch size of a request: its first input's first dimension when the model batches.
    pub fn batch_of(&self, inputs: &[Tensor]) -> u64 {
        match inputs.first() {
            Some(input) if self.config.max_batch_size > 0 => input.shape.first().copied().unwrap_or(1) as u64,
            _ => 1,
        }
    }
}

/// A model's state in the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<String>,
    /// READY or UNAVAILABLE (Triton's words); `None` for a model never loaded.
    pub state: Option<&'static str>,
    pub reason: String,
}

/// The server's settings that its state consults (from `ServeOptions`).
#[derive(Clone, Copy, Debug)]
pub struct Flags {
    pub control: ControlMode,
    pub body_limit: usize,
    pub strict_readiness: bool,
    pub allow_client_shm: bool,
    /// Python models' `auto_complete_config` is called at load (Triton's
    /// `--disable-auto-complete-config` turns it off).
    pub auto_complete: bool,
}

pub struct ServerState {
    pub runtime: Runtime,
    pub repository: PathBuf,
    pub control: ControlMode,
    pub body_limit: usize,
    strict_readiness: bool,
    auto_complete: bool,
    /// Models whose configuration was read but whose load failed, with no version serving:
    /// under strict readiness the server is not ready while one is here (Triton: such a model
    /// is UNAVAILABLE in its lifecycle table; one whose configuration could not be read never
    /// enters it).
    failed_loads: Mutex<BTreeSet<String>>,
    models: RwLock<BTreeMap<String, Versions>>,
    /// Per model name and version, for the server's life.
    counters: Mutex<BTreeMap<(String, u64), Arc<Counters>>>,
    /// Why a model is not ready (load failure, unloaded).
    reasons: Mutex<BTreeMap<String, String>>,
    control_lock: Arc<tokio::sync::Mutex<()>>,
    /// The ensembles whose steps are being loaded, outermost first (under `control_lock`):
    /// an ensemble met again is a circular dependency.
    loading: Mutex<Vec<String>>,
    ready: AtomicBool,
    pub started: Instant,
    /// Registered system shared-memory regions (both protocols share them).
    pub shm: crate::shm::Regions,
    /// Trace settings and the trace file (Triton's trace extension).
    pub trace: crate::trace::Traces,
}

impl ServerState {
    pub fn new(runtime: Runtime, repository: PathBuf, flags: Flags, trace: crate::trace::Traces) -> ServerState {
        ServerState {
            runtime,
            repository,
            control: flags.control,
            body_limit: flags.body_limit,
            strict_readiness: flags.strict_readiness,
            auto_complete: flags.auto_complete,
            failed_loads: Mutex::new(BTreeSet::new()),
            models: RwLock::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            reasons: Mutex::new(BTreeMap::new()),
            control_lock: Arc::new(tokio::sync::Mutex::new(())),
            loading: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            shm: crate::shm::Regions::new(flags.allow_client_shm),
            trace,
        }
    }

    /// A version's definition as this server loads it: a Python model without
    /// `auto_complete_config` under `--disable-auto-complete-config`.
    pub(crate) fn served_def(&self, def: &corral_runtime::ModelDef) -> corral_runtime::ModelDef {
        let mut def = def.clone();
        if let corral_engine::ModelSource::Python(model) = &mut def.source {
            model.auto_complete = self.auto_complete;
        }
        def
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Whether a loaded version is ready for calls, as the model readiness endpoints say: its
    /// instances can take one, or, for an ensemble, each of its steps (loaded, and ready) can.
    pub fn ready(&self, served: &Served) -> bool {
        match served.ensemble() {
            None => served.can_take_calls(),
            Some(plan) => {
                plan.steps.iter().all(|step| self.model(&step.model, &step.version).is_ok_and(|s| self.ready(&s)))
            }
        }
    }

    /// Whether the server is ready, and why not: its start-up loads are not done, or (strict
    /// readiness, Triton's `--strict-readiness`, server.cc `IsReady`) a model whose
    /// configuration was read failed to load and has no version serving. A model whose
    /// configuration cannot be read does not count, as in Triton; the index shows both.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Relaxed) {
            return Err("the server is still loading its models".to_owned());
        }
        let failed = lock(&self.failed_loads);
        if self.strict_readiness && !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(String::as_str).collect();
            return Err(format!(
                "not ready: {} failed to load (strict readiness)\nhint: load it again once fixed, unload it, or start with --strict-readiness=false",
                names.join(", ")
            ));
        }
        Ok(())
    }

    /// The models whose configuration was read and whose load failed, with no version
    /// serving (what strict readiness waits on).
    pub fn failed_loads(&self) -> Vec<String> {
        lock(&self.failed_loads).iter().cloned().collect()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Relaxed);
    }

    /// Every loaded version of every model, by name then version.
    pub fn served(&self) -> Vec<Arc<Served>> {
        sync::read(&self.models).values().flat_map(|v| v.values().cloned()).collect()
    }

    /// Every loaded version of `name`, ascending (empty when it is not loaded).
    pub fn versions(&self, name: &str) -> Vec<Arc<Served>> {
        let models = sync::read(&self.models);
        models.get(name).map(|v| v.values().cloned().collect()).unwrap_or_default()
    }

    /// Every model version's counters, loaded or not, by name then version.
    pub fn all_counters(&self) -> Vec<(String, u64, Arc<Counters>)> {
        lock(&self.counters).iter().map(|((n, v), c)| (n.clone(), *v, c.clone())).collect()
    }

    /// The loaded model `name`, at `version` when one is given, else its highest loaded
    /// version. Errors use Triton's words (clients match them), with corral's reason after
    /// them where there is one.
    pub fn model(&self, name: &str, version: &str) -> Result<Arc<Served>, CallError> {
        let number = match version {
            "" => None,
            text => Some(text.parse::<i64>().map_err(|_| triton::bad_version(version))?),
        };
        let models = sync::read(&self.models);
        let Some(versions) = models.get(name) else {
            return Err(match lock(&self.reasons).get(name) {
                Some(why) => triton::no_available_versions(name, why),
                None => triton::unknown_model(name),
            });
        };
        let served = match number {
            // Triton: -1 (or no version) is the highest ready version.
            None | Some(-1) => versions.values().next_back(),
            Some(n) => u64::try_from(n).ok().and_then(|n| versions.get(&n)),
        };
        served.cloned().ok_or_else(|| {
            let loaded: Vec<String> = versions.keys().map(u64::to_string).collect();
            triton::version_not_found(name, version, &format!("loaded: {}", loaded.join(", ")))
        })
    }

    /// Runs one call of `served`, counting it as Triton does; `decoded` is the time the
    /// protocol took to turn the request into `inputs` (Triton's `compute_input`).
    pub async fn infer(
        &self,
        served: &Served,
        inputs: Vec<Tensor>,
        sequence: &SequenceParams,
        decoded: std::time::Duration,
    ) -> Result<Inference, CallError> {
        let counters = &served.counters;
        let start = Instant::now();
        let pending = counters.pending();
        let batch = served.batch_of(&inputs);
        let Some(model) = served.model() else {
            return Err(CallError::new(
                ErrorKind::Internal,
                format!("{} is an ensemble: its steps run it", served.name),
            ));
        };
        let result = match (&served.sequencer, &served.batcher) {
            (Some(sequencer), _) => match sequencer.submit(model, inputs, sequence) {
                Ok(reply) => crate::batcher::started_in_time(model, reply).await.map_err(CallError::from),
                Err(error) => Err(error),
            },
            (None, Some(batcher)) => batcher.infer(inputs).await,
            (None, None) => match model.try_submit(inputs) {
                Ok(reply) => crate::batcher::started_in_time(model, reply).await.map_err(CallError::from),
                Err(error) => Err(CallError::from(error)),
            },
        };
        // The runtime knows the version as `NAME@V`; clients know it by name and version.
        let result = result.map_err(|error| served.named(error));
        drop(pending);
        self.count(served, batch, decoded, start, result.as_ref().map(|i| (i.started, i.compute)));
        result
    }

    /// Counts one call of `served` that began at `start` and ended now, as Triton does: its
    /// success (`Ok` with when it left the queue and how long it computed) or failure.
    pub fn count(
        &self,
        served: &Served,
        batch: u64,
        decoded: std::time::Duration,
        start: Instant,
        result: Result<(Instant, std::time::Duration), &CallError>,
    ) {
        let counters = &served.counters;
        let elapsed = start.elapsed();
        counters.duration.observe(elapsed);
        match result {
            Ok((started, compute)) => {
                counters.success.add(decoded + elapsed);
                counters.queue.add(started.saturating_duration_since(start));
                counters.inferences.fetch_add(batch, Relaxed);
                if served.batcher.is_none() {
                    // One execution of this request (the batcher counts its own).
                    counters.executions.fetch_add(1, Relaxed);
                    counters.batch(batch, decoded, compute);
                }
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                counters.last_inference_ms.store(now.as_millis() as u64, Relaxed);
            }
            Err(_) => counters.fail.add(elapsed),
        }
    }

    /// A request refused before it ran because of its inputs (decoding or Triton's checks):
    /// counted as a failure (Triton's statistics and metrics) and as the model's input
    /// failure (`corral monitor`'s `incorrect_input`), as the runtime counts its own.
    pub fn refused(&self, served: &Served, error: CallError) -> CallError {
        if error.kind == ErrorKind::BadRequest || error.kind == ErrorKind::Internal {
            served.counters.fail.add(std::time::Duration::ZERO);
            if let Some(model) = served.model() {
                model.count_refused_input();
            }
        }
        error
    }

    /// Whether a request of `served` that reached the server at `received` is traced.
    pub fn trace(&self, served: &Served, received: Instant) -> Option<crate::trace::Trace> {
        self.trace.sample(&served.name, served.number, received)
    }

    /// Records the engine's points of a traced call (its inputs are bound and its outputs read
    /// inside the run, so the inner points equal its ends).
    pub fn traced_compute(trace: &mut Option<crate::trace::Trace>, inference: &Inference) {
        if let Some(trace) = trace {
            let end = inference.started + inference.compute;
            trace.point("COMPUTE_START", inference.started);
            trace.point("COMPUTE_INPUT_END", inference.started);
            trace.point("COMPUTE_OUTPUT_START", end);
            trace.point("COMPUTE_END", end);
        }
    }

    /// Ends a traced call once its answer is encoded.
    pub fn trace_end(&self, trace: Option<crate::trace::Trace>) {
        if let Some(trace) = trace {
            self.trace.finish(trace, Instant::now());
        }
    }

    /// Counts the time a protocol took to turn a call's outputs into its answer (Triton's
    /// `compute_output`; it also lengthens the call's success time), with the call's
    /// `compute_input` (`decoded`) and `compute_infer` (the engine's run), all three at once;
    /// `batch` is the call's batch size ([`Served::batch_of`]).
    pub fn encoded(
        &self,
        served: &Served,
        batch: u64,
        decoded: std::time::Duration,
        inference: &Inference,
        took: std::time::Duration,
    ) {
        served.counters.compute.add(decoded, inference.compute, took);
        if served.batcher.is_none() {
            served.counters.batch_output(batch, took);
        }
        served.counters.success.ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    fn counters_for(&self, name: &str, version: u64) -> Arc<Counters> {
        lock(&self.counters).entry((name.to_owned(), version)).or_default().clone()
    }
}

impl Served {
    /// A runtime error of this version's model, told in the name and version clients use.
    pub(crate) fn named(&self, error: CallError) -> CallError {
        let runtime_name = self.model().map_or("", |m| m.name());
        if error.kind == ErrorKind::NotFound {
            // The runtime says the model was unloaded under the call.
            return triton::version_unavailable(&self.name, &self.version, "unloaded");
        }
        CallError::new(error.kind, error.message.replace(&format!("`{runtime_name}`"), &format!("`{}`", self.name)))
    }
}
