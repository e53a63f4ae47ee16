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

mod context;
pub mod repository;
pub mod scheduler;
mod stats;
mod worker;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use context::{PlacementContext, cores_context, group_context, multicore_context};
use corral_cores::{CoreSet, DeviceSpec, Lease, TakeError, TakeSettings};
use corral_engine::{
    Engine, EngineError, InputError, ModelSource, SessionPlacement, SimEngine, SimModel, Tensor, TensorSpec,
};
pub use corral_placement::{CoreSpan, Layout, PlacementError, Where};
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
pub use stats::ModelStats;
pub use worker::Reply;

use crate::{scheduler::Scheduler, stats::Recorder, worker::Job};

/// `CORRAL_EXEC_TIMEOUT`: seconds a call may wait to start before failing.
pub const EXEC_TIMEOUT_ENV: &str = "CORRAL_EXEC_TIMEOUT";
pub const EXEC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// How a runtime is set up; `Default` reads everything from the environment.
#[derive(Clone)]
pub struct RuntimeSettings {
    /// Device, explicit core request and lock folder (else the environment's).
    pub take: TakeSettings,
    /// Else `CORRAL_EXEC_TIMEOUT`, else 30 s.
    pub exec_timeout: Option<Duration>,
    /// Calls queued per instance before callers wait (and time out).
    pub queue_len_max: usize,
    /// Same-model calls an instance runs in a row on its gang before letting others in
    /// (1 = plain FIFO order).
    pub run_max: usize,
    /// The engine for ONNX models (ONNX Runtime or tract), chosen by the caller.
    pub onnx_engine: Option<Arc<dyn Engine>>,
}

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            take: TakeSettings::default(),
            exec_timeout: None,
            queue_len_max: 1024,
            run_max: 8,
            onnx_engine: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Take(#[from] TakeError),
    #[error("{name}={value} is not valid: {reason}\nhint: {hint}")]
    Setting { name: &'static str, value: String, reason: String, hint: &'static str },
}

/// A model to load: what it is, its cores per instance (K) and, optionally, its placement
/// (else the thread's context, else the least-used cores).
#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: String,
    pub source: ModelSource,
    pub cores_per_instance: usize,
    pub placement: Option<Where>,
}

impl ModelDef {
    pub fn sim(name: impl Into<String>, model: SimModel) -> ModelDef {
        ModelDef { name: name.into(), source: ModelSource::Sim(model), cores_per_instance: 1, placement: None }
    }

    pub fn onnx(name: impl Into<String>, path: impl Into<std::path::PathBuf>) -> ModelDef {
        ModelDef { name: name.into(), source: ModelSource::Onnx(path.into()), cores_per_instance: 1, placement: None }
    }

    /// Sets K, the cores each instance spans.
    pub fn cores(mut self, k: usize) -> ModelDef {
        self.cores_per_instance = k;
        self
    }

    pub fn at(mut self, placement: Where) -> ModelDef {
        self.placement = Some(placement);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("a model named `{name}` is already loaded\nhint: unload it first, or load under another name")]
    Exists { name: String },
    #[error("no model named `{name}` is loaded")]
    NotFound { name: String },
    #[error("cannot place `{model}`: {source}")]
    Placement {
        model: String,
        #[source]
        source: PlacementError,
    },
    #[error("cannot load `{model}`: {source}")]
    Engine {
        model: String,
        #[source]
        source: EngineError,
    },
    #[error(
        "cannot load `{model}`: no ONNX engine is available\nhint: run ./scripts/setup, which installs ONNX Runtime"
    )]
    NoOnnxEngine { model: String },
    #[error("cannot start a worker thread for `{model}`")]
    Thread {
        model: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error("model `{model}`: {source}")]
    Input {
        model: String,
        #[source]
        source: InputError,
    },
    #[error(
        "model `{model}` could not start within {} s: its cores stayed busy\nhint: raise {EXEC_TIMEOUT_ENV}, add replicas, or move models that share its cores",
        waited.as_secs_f64()
    )]
    Timeout { model: String, waited: Duration },
    #[error("model `{model}` is not loaded")]
    Unloaded { model: String },
    #[error(
        "model `{model}` has {queue_len_max} calls waiting on its least busy replica; this call was refused\nhint: retry later, or add replicas"
    )]
    QueueFull { model: String, queue_len_max: usize },
    #[error("model `{model}`: {source}")]
    Engine {
        model: String,
        #[source]
        source: EngineError,
    },
    #[error("{0}")]
    Internal(String),
}

/// The answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Inference {
    pub outputs: Vec<Tensor>,
    /// Which replica ran it, and on which process cores.
    pub instance: usize,
    pub cores: CoreSpan,
    /// When the engine started on it, and for how long it ran.
    pub started: Instant,
    pub compute: Duration,
}

/// Per-core statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreStats {
    /// Process-relative index.
    pub index: usize,
    /// Device (global) index.
    pub global: usize,
    pub cpus: Vec<usize>,
    pub executions: u64,
    pub busy: Duration,
    pub switches: u64,
    pub models: Vec<String>,
}

/// A process's cores and the models on them. Cheap to clone; all clones share one runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    lease: Lease,
    scheduler: Arc<Scheduler>,
    loaded: Mutex<Loaded>,
    /// Serialises loads (slow: engines parse models) without blocking calls or reads.
    load_lock: Mutex<()>,
    next_model_id: AtomicU64,
    exec_timeout: Duration,
    queue_len_max: usize,
    run_max: usize,
    onnx_engine: Option<Arc<dyn Engine>>,
}

struct Loaded {
    layout: Layout,
    models: BTreeMap<String, Model>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runtime {
    /// Takes this process's cores as `settings` and the environment say.
    pub fn new(settings: RuntimeSettings) -> Result<Runtime, RuntimeError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let exec_timeout = match settings.exec_timeout {
            Some(timeout) => timeout,
            None => exec_timeout_from(lookup(EXEC_TIMEOUT_ENV))?,
        };
        let (_registry, lease) = corral_cores::take_cores(&settings.take, lookup)?;
        Ok(Runtime::with_lease(lease, RuntimeSettings { exec_timeout: Some(exec_timeout), ..settings }))
    }

    /// Everything from the environment (`CORRAL_DEVICE`, `NEURON_RT_NUM_CORES`, …).
    pub fn from_env() -> Result<Runtime, RuntimeError> {
        Runtime::new(RuntimeSettings::default())
    }

    /// A runtime on cores already leased.
    pub fn with_lease(lease: Lease, settings: RuntimeSettings) -> Runtime {
        let group_sizes: Vec<usize> = lease.groups().iter().map(|g| g.count).collect();
        let inner = Inner {
            scheduler: Arc::new(Scheduler::new(lease.len())),
            loaded: Mutex::new(Loaded { layout: Layout::new(lease.len(), &group_sizes), models: BTreeMap::new() }),
            lease,
            load_lock: Mutex::new(()),
            next_model_id: AtomicU64::new(1),
            exec_timeout: settings.exec_timeout.unwrap_or(EXEC_TIMEOUT_DEFAULT),
            queue_len_max: settings.queue_len_max.max(1),
            run_max: settings.run_max.max(1),
            onnx_engine: settings.onnx_engine,
        };
        Runtime { inner: Arc::new(inner) }
    }

    pub fn device(&self) -> &DeviceSpec {
        self.inner.lease.device()
    }

    /// Number of process cores; APIs number them `0..cores()`.
    pub fn cores(&self) -> usize {
        self.inner.lease.len()
    }

    /// The process cores by device (global) index, consecutive or not; process core `i` is
    /// the `i`-th in ascending order.
    pub fn global_cores(&self) -> &CoreSet {
        self.inner.lease.cores()
    }

    pub fn exec_timeout(&self) -> Duration {
        self.inner.exec_timeout
    }

    /// The descriptors that hold this process's cores (see `corral_cores::Lease::lock_fds`):
    /// a forked child closes its copies so that it never keeps the parent's cores.
    pub fn lock_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.inner.lease.lock_fds()
    }

    /// Loads a model: places it (explicit placement, else this thread's context, else the
    /// least-used cores), prepares it once, and starts one worker per instance. Nothing
    /// already loaded is disturbed when it fails.
    pub fn load(&self, def: ModelDef) -> Result<Model, LoadError> {
        let inner = &self.inner;
        let _one_load_at_a_time = lock(&inner.load_lock);
        let placement = self.place(&def, false)?;
        let model = self.start(&def, &placement)?;
        let mut loaded = lock(&inner.loaded);
        loaded.layout.commit(&placement);
        loaded.models.insert(def.name.clone(), model.clone());
        self.publish(&loaded);
        tracing::info!(model = %def.name, instances = ?placement.instances, "loaded");
        Ok(model)
    }

    /// Loads `def` beside the loaded model of the same name and gives the name to it: the new
    /// instances are placed as if the old ones were gone (sharing their cores, and counting
    /// switches, while both exist), started, and only then made the model of that name. The
    /// old model keeps answering calls until the returned [`Replacement`] is dropped, which
    /// drains and stops it, so a caller holding the old handle switches to the new one first.
    /// When anything fails, the old model stays loaded and untouched.
    pub fn replace(&self, def: ModelDef) -> Result<Replacement, LoadError> {
        let inner = &self.inner;
        let _one_load_at_a_time = lock(&inner.load_lock);
        let placement = self.place(&def, true)?;
        let model = self.start(&def, &placement)?;
        let mut loaded = lock(&inner.loaded);
        loaded.layout.remove(&def.name);
        loaded.layout.commit(&placement);
        // An unload that ran meanwhile (unloads do not wait for loads) leaves no old model.
        let old = loaded.models.insert(def.name.clone(), model.clone());
        self.publish(&loaded);
        tracing::info!(model = %def.name, instances = ?placement.instances, "replaced");
        Ok(Replacement { model, old })
    }

    /// Where `def` goes: its own placement, else this thread's context, else the least-used
    /// cores. A new model's name must be free; a replacement's must be loaded, and it is placed
    /// as if the model of that name were gone.
    fn place(&self, def: &ModelDef, replacing: bool) -> Result<corral_placement::Placement, LoadError> {
        let at = def.placement.or_else(context::current).unwrap_or_default();
        let loaded = lock(&self.inner.loaded);
        let mut layout = std::borrow::Cow::Borrowed(&loaded.layout);
        match (loaded.models.contains_key(&def.name), replacing) {
            (true, false) => return Err(LoadError::Exists { name: def.name.clone() }),
            (false, true) => return Err(LoadError::NotFound { name: def.name.clone() }),
            (true, true) => layout.to_mut().remove(&def.name),
            (false, false) => {}
        }
        layout
            .place(&def.name, def.cores_per_instance, at)
            .map_err(|source| LoadError::Placement { model: def.name.clone(), source })
    }

    /// Prepares `def` and starts one worker per instance of `placement`.
    fn start(&self, def: &ModelDef, placement: &corral_placement::Placement) -> Result<Model, LoadError> {
        let inner = &self.inner;
        let engine: Arc<dyn Engine> = match &def.source {
            ModelSource::Sim(_) => Arc::new(SimEngine),
            ModelSource::Onnx(_) => {
                inner.onnx_engine.clone().ok_or_else(|| LoadError::NoOnnxEngine { model: def.name.clone() })?
            }
        };
        let engine_error = |source| LoadError::Engine { model: def.name.clone(), source };
        let prepared = engine.prepare(&def.source).map_err(engine_error)?;
        let model_id = inner.next_model_id.fetch_add(1, Ordering::Relaxed);
        let recorder = Arc::new(Recorder::new(placement.instances.len()));
        let mut instances = Vec::with_capacity(placement.instances.len());
        for (index, &cores) in placement.instances.iter().enumerate() {
            let core_cpus: Vec<Vec<usize>> = cores.cores().map(|c| inner.lease.core_cpus(c).to_vec()).collect();
            let session = prepared.session(&SessionPlacement { core_cpus: core_cpus.clone() }).map_err(engine_error)?;
            let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(inner.queue_len_max);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let spec = worker::WorkerSpec {
                model: def.name.clone(),
                model_id,
                instance: index,
                cores,
                first_core_cpus: core_cpus[0].clone(),
                scheduler: inner.scheduler.clone(),
                recorder: recorder.clone(),
                in_flight: in_flight.clone(),
                exec_timeout: inner.exec_timeout,
                run_max: inner.run_max,
            };
            let thread = worker::spawn(spec, session, jobs_rx)
                .map_err(|source| LoadError::Thread { model: def.name.clone(), source })?;
            // On a later failure, `instances` drops: queues close and workers end.
            instances.push(Instance {
                cores,
                jobs: RwLock::new(Some(jobs_tx)),
                in_flight,
                thread: Mutex::new(Some(thread)),
            });
        }
        let warning = placement.warning();
        if let Some(warning) = &warning {
            tracing::warn!("{warning}");
        }
        Ok(Model {
            inner: Arc::new(ModelInner {
                name: def.name.clone(),
                cores_per_instance: def.cores_per_instance,
                inputs: prepared.inputs().to_vec(),
                outputs: prepared.outputs().to_vec(),
                instances,
                next: AtomicUsize::new(0),
                recorder,
                warning,
                exec_timeout: inner.exec_timeout,
                queue_len_max: inner.queue_len_max,
            }),
        })
    }

    /// Unloads a model: new calls fail at once, calls already accepted complete first.
    pub fn unload(&self, name: &str) -> Result<(), LoadError> {
        let model = {
            let mut loaded = lock(&self.inner.loaded);
            let model = loaded.models.remove(name).ok_or_else(|| LoadError::NotFound { name: name.to_owned() })?;
            loaded.layout.remove(name);
            self.publish(&loaded);
            model
        };
        model.inner.close_and_join();
        Ok(())
    }

    pub fn model(&self, name: &str) -> Option<Model> {
        lock(&self.inner.loaded).models.get(name).cloned()
    }

    /// Loaded models, by name.
    pub fn models(&self) -> Vec<Model> {
        lock(&self.inner.loaded).models.values().cloned().collect()
    }

    /// The placement of everything loaded.
    pub fn layout(&self) -> Layout {
        lock(&self.inner.loaded).layout.clone()
    }

    pub fn core_stats(&self) -> Vec<CoreStats> {
        let counters = self.inner.scheduler.counters();
        let per_core = models_per_core(&lock(&self.inner.loaded).layout);
        counters
            .into_iter()
            .enumerate()
            .map(|(index, c)| CoreStats {
                index,
                global: self.inner.lease.cores().global(index).expect("one counter per leased core"),
                cpus: self.inner.lease.core_cpus(index).to_vec(),
                executions: c.executions,
                busy: c.busy,
                switches: c.switches,
                models: per_core[index].clone(),
            })
            .collect()
    }

    fn publish(&self, loaded: &Loaded) {
        self.inner.lease.publish_models(&models_per_core(&loaded.layout));
    }
}

fn models_per_core(layout: &Layout) -> Vec<Vec<String>> {
    let mut per_core = vec![Vec::new(); layout.cores()];
    for placed in layout.placed() {
        for core in placed.cores.cores() {
            if !per_core[core].contains(&placed.model) {
                per_core[core].push(placed.model.clone());
            }
        }
    }
    per_core
}

fn exec_timeout_from(value: Option<String>) -> Result<Duration, RuntimeError> {
    let Some(value) = value else { return Ok(EXEC_TIMEOUT_DEFAULT) };
    let bad = |reason: &str| RuntimeError::Setting {
        name: EXEC_TIMEOUT_ENV,
        value: value.clone(),
        reason: reason.to_owned(),
        hint: "give seconds, e.g. 30 or 0.5",
    };
    let seconds: f64 = value.trim().parse().map_err(|_| bad("not a number of seconds"))?;
    if !(seconds > 0.0 && seconds.is_finite() && seconds < 1e9) {
        return Err(bad("must be more than 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Finish accepted calls before the lease (and so the cores) goes.
        let models: Vec<Model> = lock(&self.loaded).models.values().cloned().collect();
        for model in models {
            model.inner.close_and_join();
        }
    }
}

/// What [`Runtime::replace`] gives: the new model, and the old one, which keeps answering
/// calls made through its handles until this is dropped; dropping it drains and stops it.
#[must_use = "dropping the replacement at once stops the old model before its callers move to the new one"]
pub struct Replacement {
    pub model: Model,
    old: Option<Model>,
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            old.inner.close_and_join();
        }
    }
}

/// A loaded model: call it from any number of threads.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    name: String,
    cores_per_instance: usize,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    instances: Vec<Instance>,
    /// Round-robin position.
    next: AtomicUsize,
    recorder: Arc<Recorder>,
    warning: Option<String>,
    exec_timeout: Duration,
    /// Calls each instance's queue holds.
    queue_len_max: usize,
}

struct Instance {
    cores: CoreSpan,
    /// `None` once unloaded.
    jobs: RwLock<Option<Sender<Job>>>,
    /// Calls queued or executing on this instance.
    in_flight: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ModelInner {
    fn close_and_join(&self) {
        for instance in &self.instances {
            instance.jobs.write().unwrap_or_else(|p| p.into_inner()).take();
        }
        for instance in &self.instances {
            if let Some(thread) = lock(&instance.thread).take() {
                let _ = thread.join();
            }
        }
    }

    /// Round-robin from the next position, skipping busy replicas when one is idle.
    fn pick(&self) -> usize {
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let order = (0..n).map(|i| (start + i) % n);
        let idle = order.clone().find(|&i| self.instances[i].in_flight.load(Ordering::Acquire) == 0);
        idle.unwrap_or_else(|| {
            order.min_by_key(|&i| self.instances[i].in_flight.load(Ordering::Acquire)).expect("a model has an instance")
        })
    }
}

impl Drop for ModelInner {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

impl Model {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// K, the cores each instance spans.
    pub fn cores_per_instance(&self) -> usize {
        self.inner.cores_per_instance
    }

    /// Each instance's process cores.
    pub fn instances(&self) -> Vec<CoreSpan> {
        self.inner.instances.iter().map(|i| i.cores).collect()
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inner.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.inner.outputs
    }

    /// The warning its load raised (shared cores), if any.
    pub fn warning(&self) -> Option<&str> {
        self.inner.warning.as_deref()
    }

    pub fn stats(&self) -> ModelStats {
        self.inner.recorder.snapshot()
    }

    /// Runs one inference, blocking until its outputs are ready.
    pub fn infer(&self, inputs: Vec<Tensor>) -> Result<Inference, InferError> {
        self.submit(inputs)?.wait()
    }

    /// Runs one inference without blocking a thread (for servers): a call that finds its
    /// replica's queue full fails at once with [`InferError::QueueFull`].
    pub fn infer_async(
        &self,
        inputs: Vec<Tensor>,
    ) -> impl Future<Output = Result<Inference, InferError>> + Send + 'static {
        let submitted = self.try_submit(inputs);
        async move { submitted?.await }
    }

    /// Validates and queues a call, waiting up to the exec timeout for room in a full queue;
    /// the [`Reply`] is waited on or awaited.
    pub fn submit(&self, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, true)
    }

    /// [`Model::submit`] that never waits: a full queue fails the call at once with
    /// [`InferError::QueueFull`] (an async caller must not block its executor's thread).
    pub fn try_submit(&self, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, false)
    }

    fn enqueue(&self, inputs: Vec<Tensor>, wait_for_room: bool) -> Result<Reply, InferError> {
        let inner = &self.inner;
        inner.recorder.request();
        let failed = |error: InferError| {
            inner.recorder.failure();
            Err(error)
        };
        if let Err(source) = corral_engine::validate_inputs(&inner.inputs, &inputs) {
            return failed(InferError::Input { model: inner.name.clone(), source });
        }
        let instance = &inner.instances[inner.pick()];
        let Some(sender) = instance.jobs.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return failed(InferError::Unloaded { model: inner.name.clone() });
        };
        let (reply_tx, reply) = worker::reply_pair();
        let now = Instant::now();
        let job = Job { inputs, queued_at: now, deadline: now + inner.exec_timeout, reply: reply_tx };
        instance.in_flight.fetch_add(1, Ordering::AcqRel);
        let sent = if wait_for_room {
            sender.send_timeout(job, inner.exec_timeout)
        } else {
            sender.try_send(job).map_err(|error| match error {
                TrySendError::Full(job) => SendTimeoutError::Timeout(job),
                TrySendError::Disconnected(job) => SendTimeoutError::Disconnected(job),
            })
        };
        match sent {
            Ok(()) => Ok(reply),
            Err(error) => {
                instance.in_flight.fetch_sub(1, Ordering::AcqRel);
                let (job, error) = match error {
                    SendTimeoutError::Timeout(job) if wait_for_room => {
                        (job, InferError::Timeout { model: inner.name.clone(), waited: inner.exec_timeout })
                    }
                    SendTimeoutError::Timeout(job) => {
                        (job, InferError::QueueFull { model: inner.name.clone(), queue_len_max: inner.queue_len_max })
                    }
                    SendTimeoutError::Disconnected(job) => (job, InferError::Unloaded { model: inner.name.clone() }),
                };
                // No worker will see this job: answer its reply here.
                job.reply.send(Err(error.clone()));
                failed(error)
            }
        }
    }
}
