//! [`Runtime`]: a process's cores (its lease), the layout of the models on them, and loading,
//! replacing, moving and unloading models.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use corral_cores::sync::lock;
use corral_cores::{CoreSet, DeviceSpec, Lease};
use corral_dispatch::autopilot::{self, Bounds};
use corral_engine::{Engine, ModelSource, SimEngine, SimModel};
use corral_placement::{CoreSpan, Layout, Where};

use crate::{
    context,
    error::{LoadError, RuntimeError},
    loaded::{CoreStats, Loaded, core_stats, publish_models},
    model::{Factory, Model, ModelInner, Parts},
    periodic::Periodic,
    publish::{self, PublisherParts},
    scheduler::Scheduler,
    settings::{EXEC_TIMEOUT_DEFAULT, EXEC_TIMEOUT_ENV, RuntimeSettings},
    stats::Recorder,
    timeline::TimelineEvent,
};

/// A model to load: what it is, its cores per instance (K) and, optionally, its placement
/// (else the thread's context, else the least-used cores).
#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: String,
    pub source: ModelSource,
    pub cores_per_instance: usize,
    pub placement: Option<Where>,
    /// Elastic instances: single-core replicas on adjacent cores may also run a call across
    /// all their cores at once, when those cores are all idle (see [`ModelDef::elastic`]).
    pub elastic: bool,
    /// The autopilot's bounds, in instances (`None`: 1 to what the process's cores hold).
    pub autopilot: Option<(usize, usize)>,
    /// The engine the model's configuration names (`onnxruntime`, `openvino`, `tract`),
    /// found through [`RuntimeSettings::named_engine`]; `None`: the process's ONNX engine.
    pub engine: Option<String>,
}

impl ModelDef {
    pub fn sim(name: impl Into<String>, model: SimModel) -> ModelDef {
        ModelDef {
            name: name.into(),
            source: ModelSource::Sim(model),
            cores_per_instance: 1,
            placement: None,
            elastic: false,
            autopilot: None,
            engine: None,
        }
    }

    pub fn onnx(name: impl Into<String>, path: impl Into<std::path::PathBuf>) -> ModelDef {
        ModelDef {
            name: name.into(),
            source: ModelSource::Onnx(path.into()),
            cores_per_instance: 1,
            placement: None,
            elastic: false,
            autopilot: None,
            engine: None,
        }
    }

    /// The autopilot's bounds, in instances of K cores (SPEC §11): it keeps at least `min` and
    /// at most `max` (default 1 and what the process's cores hold; a larger `max` is cut to
    /// that with a warning, `usize::MAX` without one); `min = max` pins the model, and a model
    /// placed by group is pinned at its count, whatever its bounds. The bounds alone do not
    /// turn the autopilot on.
    pub fn autopilot(mut self, min: usize, max: usize) -> ModelDef {
        self.autopilot = Some((min, max));
        self
    }

    /// Sets K, the cores each instance spans.
    pub fn cores(mut self, k: usize) -> ModelDef {
        self.cores_per_instance = k;
        self
    }

    /// Elastic instances (off by default). With single-core replicas on adjacent cores, a
    /// call that finds every replica idle runs on one wide session spanning all their cores
    /// (an engine session with one thread per core, pinned), so a lone call gets every idle
    /// core; under load every core runs its own replica as without. The wide session is the
    /// extra memory: one more session per model. Ignored (with a log line) when the replicas
    /// span more than one core or are not adjacent.
    pub fn elastic(mut self, on: bool) -> ModelDef {
        self.elastic = on;
        self
    }

    pub fn at(mut self, placement: Where) -> ModelDef {
        self.placement = Some(placement);
        self
    }
}

/// A process's cores and the models on them. Cheap to clone; all clones share one runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    lease: Arc<Lease>,
    scheduler: Arc<Scheduler>,
    loaded: Arc<Mutex<Loaded>>,
    /// Stopped and joined first when the runtime drops, so the lease goes with the runtime.
    publisher: Mutex<Option<Periodic>>,
    /// The autopilot's thread (which also follows the process's cores on `cpu`), when it
    /// runs; stopped before the models when the runtime drops.
    controller: Mutex<Option<Periodic>>,
    autopilot_on: bool,
    /// Serialises loads (slow: engines parse models) and the autopilot's ticks, without
    /// blocking calls or reads.
    load_lock: Arc<Mutex<()>>,
    next_model_id: AtomicU64,
    exec_timeout: Duration,
    queue_len_max: usize,
    run_max: usize,
    onnx_engine: Option<Arc<dyn Engine>>,
    python_engine: Option<Arc<dyn Engine>>,
    named_engine: Option<crate::settings::NamedEngine>,
}

impl Runtime {
    /// Takes this process's cores as `settings` and the environment say.
    pub fn new(settings: RuntimeSettings) -> Result<Runtime, RuntimeError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let exec_timeout = match settings.exec_timeout {
            Some(timeout) => timeout,
            None => crate::settings::exec_timeout_from(lookup(EXEC_TIMEOUT_ENV))?,
        };
        // Every autopilot value that is set is read, even under a flag that overrides it.
        let from_env = crate::settings::autopilot_from(lookup(crate::settings::AUTOPILOT_ENV))?;
        let interval_from_env =
            crate::settings::autopilot_interval_from(lookup(crate::settings::AUTOPILOT_INTERVAL_ENV))?;
        let autopilot = Some(settings.autopilot.unwrap_or(from_env));
        let autopilot_interval = Some(settings.autopilot_interval.unwrap_or(interval_from_env));
        let (_registry, lease) = corral_cores::take_cores(&settings.take, lookup)?;
        Ok(Runtime::with_lease(
            lease,
            RuntimeSettings { exec_timeout: Some(exec_timeout), autopilot, autopilot_interval, ..settings },
        ))
    }

    /// Everything from the environment (`CORRAL_DEVICE`, `NEURON_RT_NUM_CORES`, …).
    pub fn from_env() -> Result<Runtime, RuntimeError> {
        Runtime::new(RuntimeSettings::default())
    }

    /// A runtime on cores already leased.
    pub fn with_lease(lease: Lease, settings: RuntimeSettings) -> Runtime {
        let group_sizes: Vec<usize> = lease.groups().iter().map(|g| g.count).collect();
        let lease = Arc::new(lease);
        let watch = matches!(lease.device(), DeviceSpec::Cpu { .. });
        // A default lease on `cpu` may grow to every core of the device (SPEC §2): the
        // scheduler counts for each from the start; the layout grows as cores join.
        let capacity = if watch && lease.is_by_default() { lease.host_device().len() } else { 0 };
        let scheduler = Arc::new(Scheduler::new(lease.len().max(capacity)));
        let loaded = Arc::new(Mutex::new(Loaded {
            layout: Layout::new(lease.len(), &group_sizes),
            models: BTreeMap::new(),
            timeline: Default::default(),
        }));
        let sources = PublisherParts { lease: lease.clone(), scheduler: scheduler.clone(), loaded: loaded.clone() };
        let publisher = if settings.publish { publish::start(sources) } else { None };
        let load_lock = Arc::new(Mutex::new(()));
        // The controller thread runs for the autopilot, and on the real CPU device (whose cores
        // can leave the process) to follow its cores.
        let interval = (settings.autopilot == Some(true))
            .then(|| settings.autopilot_interval.unwrap_or(crate::settings::AUTOPILOT_INTERVAL_DEFAULT));
        let controller = if interval.is_some() || watch {
            let sources = crate::autopilot::ControllerParts {
                lease: lease.clone(),
                loaded: loaded.clone(),
                load_lock: load_lock.clone(),
            };
            crate::autopilot::start(sources, interval, watch)
        } else {
            None
        };
        let inner = Inner {
            scheduler,
            loaded,
            publisher: Mutex::new(publisher),
            autopilot_on: interval.is_some(),
            controller: Mutex::new(controller),
            lease,
            load_lock,
            next_model_id: AtomicU64::new(1),
            exec_timeout: settings.exec_timeout.unwrap_or(EXEC_TIMEOUT_DEFAULT),
            queue_len_max: settings.queue_len_max.max(1),
            run_max: settings.run_max.max(1),
            onnx_engine: settings.onnx_engine,
            python_engine: settings.python_engine,
            named_engine: settings.named_engine,
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

    /// The process cores by device (global) index, consecutive or not. Process core `i` is
    /// the `i`-th in ascending order among those taken at the start; cores that join later
    /// (SPEC §2) are numbered after them ([`Runtime::global`]).
    pub fn global_cores(&self) -> CoreSet {
        self.inner.lease.cores()
    }

    /// The device (global) index of process core `relative`.
    pub fn global(&self, relative: usize) -> usize {
        self.inner.lease.global(relative)
    }

    pub fn exec_timeout(&self) -> Duration {
        self.inner.exec_timeout
    }

    /// Whether the autopilot runs (SPEC §11).
    /// Where models' calls to other models go (Triton's BLS), for the engines whose models
    /// make them (the Python engine): the server attaches itself once it runs.
    pub fn attach_calls(&self, calls: Arc<dyn corral_engine::Calls>) {
        if let Some(engine) = &self.inner.python_engine {
            engine.attach(calls);
        }
    }

    /// The metrics the engines' models made themselves, in Prometheus' text format.
    pub fn engine_metrics(&self) -> String {
        self.inner.python_engine.as_ref().map(|engine| engine.metrics()).unwrap_or_default()
    }

    pub fn autopilot(&self) -> bool {
        self.inner.autopilot_on
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
        let spans: Vec<String> = placement.instances.iter().map(|s| s.to_string()).collect();
        let text = format!("loaded on [{}]", spans.join(" "));
        tracing::info!(model = %def.name, "{text}");
        loaded.timeline.push("load", Some(&def.name), text);
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
        let spans: Vec<String> = placement.instances.iter().map(|s| s.to_string()).collect();
        loaded.timeline.push("replace", Some(&def.name), format!("replaced, on [{}]", spans.join(" ")));
        Ok(Replacement { model, old })
    }

    /// Undoes a [`Runtime::replace`] whose swap the caller decided against (a reload of
    /// several versions where a later one failed): the old model gets its name and cores back
    /// and the new one is stopped. Calls already made through the new model's handle are
    /// answered first; the old model never stopped, so nothing it accepted is lost.
    pub fn revert(&self, mut replacement: Replacement) {
        let new = replacement.model.clone();
        let Some(old) = replacement.old.take() else {
            // Nothing to give the name back to (it was unloaded meanwhile): stop the new one.
            let _ = self.unload(new.name());
            return;
        };
        {
            let mut loaded = lock(&self.inner.loaded);
            if loaded.models.get(new.name()).is_some_and(|m| Arc::ptr_eq(&m.inner, &new.inner)) {
                loaded.layout.remove(new.name());
                let placement = corral_placement::Placement {
                    model: old.name().to_owned(),
                    instances: old.instances(),
                    shared: Vec::new(),
                };
                loaded.layout.commit(&placement);
                loaded.models.insert(old.name().to_owned(), old);
                self.publish(&loaded);
            }
        }
        new.inner.close_and_join();
        tracing::info!(model = %new.name(), "replacement reverted");
    }

    /// Where `def` goes: its own placement, else this thread's context, else the least-used
    /// cores. A new model's name must be free; a replacement's must be loaded, and it is placed
    /// as if the model of that name were gone.
    fn place(&self, def: &ModelDef, replacing: bool) -> Result<corral_placement::Placement, LoadError> {
        let at = resolved(def);
        let loaded = lock(&self.inner.loaded);
        let mut layout = std::borrow::Cow::Borrowed(&loaded.layout);
        match (loaded.models.contains_key(&def.name), replacing) {
            (true, false) => return Err(LoadError::Exists { name: def.name.clone() }),
            (false, true) => return Err(LoadError::NotFound { name: def.name.clone() }),
            (true, true) => layout.to_mut().remove(&def.name),
            (false, false) => {}
        }
        layout
            .place(&def.name, def.cores_per_instance, &at)
            .map_err(|source| LoadError::Placement { model: def.name.clone(), source })
    }

    /// Prepares `def` and starts one worker per instance of `placement`.
    fn start(&self, def: &ModelDef, placement: &corral_placement::Placement) -> Result<Model, LoadError> {
        let inner = &self.inner;
        let engine: Arc<dyn Engine> = match &def.source {
            ModelSource::Sim(_) => Arc::new(SimEngine),
            ModelSource::Python(_) => {
                inner.python_engine.clone().ok_or_else(|| LoadError::NoPythonEngine { model: def.name.clone() })?
            }
            ModelSource::Onnx(_) => match &def.engine {
                Some(name) => {
                    let named = inner
                        .named_engine
                        .as_ref()
                        .ok_or_else(|| LoadError::NoOnnxEngine { model: def.name.clone() })?;
                    named(name).map_err(|reason| LoadError::EngineChoice { model: def.name.clone(), reason })?
                }
                None => inner.onnx_engine.clone().ok_or_else(|| LoadError::NoOnnxEngine { model: def.name.clone() })?,
            },
        };
        tracing::info!(model = %def.name, "engine: {}", engine.name());
        let bounds = self.bounds(def, placement.instances.len())?;
        let prepared =
            engine.prepare(&def.source).map_err(|source| LoadError::Engine { model: def.name.clone(), source })?;
        let model_id = inner.next_model_id.fetch_add(1, Ordering::Relaxed);
        let recorder = Arc::new(Recorder::new());
        let factory = Factory {
            engine: engine.name(),
            prepared,
            lease: inner.lease.clone(),
            scheduler: inner.scheduler.clone(),
            model_id,
            exec_timeout: inner.exec_timeout,
            run_max: inner.run_max,
            queue_len_max: inner.queue_len_max,
        };
        let wide = Arc::new(Mutex::new(None));
        let mut instances = Vec::with_capacity(placement.instances.len());
        for (index, &cores) in placement.instances.iter().enumerate() {
            // On a later failure, `instances` drops: queues close and workers end.
            instances.push(factory.start(&def.name, index as u64, cores, &recorder, &wide)?);
        }
        // The wide session after the instances: an engine that chooses by timing (`auto`)
        // chooses at the first instance, on one core, not on the elastic span.
        if let Some(span) = elastic_span(def, &placement.instances) {
            *lock(&wide) = Some(factory.wide(&def.name, span)?);
        }
        if let Some(choice) = factory.prepared.chosen() {
            tracing::info!(model = %def.name, "engine chosen: {} ({})", choice.engine, choice.reason);
        }
        let warning = placement.warning();
        if let Some(warning) = &warning {
            tracing::warn!("{warning}");
        }
        let parts = Parts {
            name: def.name.clone(),
            id: model_id,
            cores_per_instance: def.cores_per_instance,
            instances,
            elastic_asked: def.elastic,
            wide,
            recorder,
            warning,
            factory,
            bounds,
        };
        Ok(Model { inner: Arc::new(ModelInner::new(parts)) })
    }

    /// The autopilot's bounds of `def`, placed as `count` instances
    /// (`corral_dispatch::autopilot::bounds`, which the planner's simulator uses too): its own
    /// (refused unless `1 <= min <= max`), else 1 to as many as the process's cores hold; a
    /// `max` that cannot fit is cut to what fits (with a warning); legacy groups pin.
    fn bounds(&self, def: &ModelDef, count: usize) -> Result<Bounds, LoadError> {
        let bad = |reason: String| LoadError::Bounds { model: def.name.clone(), reason };
        if let Some((min, max)) = def.autopilot {
            if min < 1 {
                return Err(bad(format!("autopilot min = {min}: a model keeps at least 1 instance")));
            }
            if min > max {
                return Err(bad(format!("autopilot min = {min} is above max = {max}")));
            }
            let fit = autopilot::fit(self.cores(), def.cores_per_instance);
            // usize::MAX is "no max given" (a config with only `min`): no warning for it.
            if max > fit && max != usize::MAX {
                tracing::warn!(
                    model = %def.name,
                    "autopilot max = {max} instances do not fit the process's {} cores; at most {fit}",
                    self.cores()
                );
            }
        }
        let grouped = matches!(resolved(def), Where::Group(_)).then_some(count);
        Ok(autopilot::bounds(def.autopilot, self.cores(), def.cores_per_instance, grouped))
    }

    /// Unloads a model: new calls fail at once, calls already accepted complete first.
    pub fn unload(&self, name: &str) -> Result<(), LoadError> {
        let model = {
            let mut loaded = lock(&self.inner.loaded);
            let model = loaded.models.remove(name).ok_or_else(|| LoadError::NotFound { name: name.to_owned() })?;
            loaded.layout.remove(name);
            self.publish(&loaded);
            loaded.timeline.push("unload", Some(name), "unloaded".to_owned());
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

    /// Per-core counters; an execution is counted before its caller is answered.
    pub fn core_stats(&self) -> Vec<CoreStats> {
        let inner = &self.inner;
        core_stats(&inner.lease, &inner.scheduler, &lock(&inner.loaded))
    }

    /// Per process core, whether a gang (any model's) holds it now: a test that drives calls
    /// step by step waits on it until a worker that answered has let its cores go.
    pub fn cores_held(&self) -> Vec<bool> {
        self.inner.scheduler.busy()
    }

    /// What happened to the placement after event `seq` (0: everything kept), oldest first:
    /// loads, unloads, the autopilot's moves, cores leaving and joining (see `timeline.rs`).
    pub fn timeline_since(&self, seq: u64) -> Vec<TimelineEvent> {
        lock(&self.inner.loaded).timeline.since(seq)
    }

    /// The registry of this runtime's device (every process holding its cores), when the
    /// lease has one.
    pub fn registry(&self) -> Option<corral_cores::Registry> {
        self.inner.lease.registry()
    }

    fn publish(&self, loaded: &Loaded) {
        publish_models(&self.inner.lease, loaded);
    }
}

/// Where `def` goes: its own placement, else this thread's placement context, else the
/// default (least-used cores).
fn resolved(def: &ModelDef) -> Where {
    def.placement.clone().or_else(context::current).unwrap_or_default()
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The autopilot moves instances: stop it before the models go.
        if let Some(controller) = lock(&self.controller).take() {
            controller.stop();
        }
        // The publisher holds the lease too: stop it first, so the lease ends with the runtime.
        if let Some(publisher) = lock(&self.publisher).take() {
            publisher.stop();
        }
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

/// The cores an elastic model's wide session spans (`corral_dispatch::elastic::wide_span`);
/// `None` otherwise, logged when elastic was asked for.
fn elastic_span(def: &ModelDef, instances: &[CoreSpan]) -> Option<CoreSpan> {
    if !def.elastic || instances.len() < 2 {
        return None;
    }
    let span = corral_dispatch::elastic::wide_span(def.cores_per_instance, instances);
    if span.is_none() {
        tracing::warn!(model = %def.name, "elastic instances need single-core replicas on adjacent cores; left off");
    }
    span
}
