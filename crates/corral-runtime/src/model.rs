//! [`Model`]: a loaded model's handle, its instances, and the call paths (blocking, with a
//! timeout, async), which pick a replica and queue the call on it.
//!
//! A model's instances can change while it serves (the autopilot, SPEC §11): the set that
//! takes calls is one list replaced whole ([`Model::add_instance`], [`Model::retire_instance`]),
//! which a call reads once. A new instance is started (its engine session prepared, its
//! worker pinned) before it enters the list; a retired one leaves the list first, so no new
//! call reaches it, and its worker ends after the calls it already accepted. A call that
//! picked an instance a moment before it was retired either lands in its queue (and is run)
//! or finds the queue closed and picks again from the new list: no call is lost to a move.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use corral_cores::Lease;
use corral_cores::sync::{self, lock};
use corral_dispatch::{
    autopilot::{self, Bounds, Demand, InstanceView, ModelView},
    elastic::Arrivals,
    replica::PICKS_MAX,
};
use corral_engine::{Prepared, SessionPlacement, Tensor, TensorSpec};
use corral_placement::CoreSpan;
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::{
    error::{InferError, LoadError},
    scheduler::Scheduler,
    stats::{ModelStats, Recorder},
    wait,
    worker::{self, Inference, Job, Reply, Wide},
};

/// A loaded model: call it from any number of threads.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

/// Moves the autopilot made, by direction.
#[derive(Debug, Default)]
pub(crate) struct MoveCounts {
    pub(crate) grow: AtomicU64,
    pub(crate) shrink: AtomicU64,
    pub(crate) relocate: AtomicU64,
}

pub(crate) struct ModelInner {
    pub(crate) name: String,
    /// The scheduler's id of this load (a reload gets a new one).
    pub(crate) id: crate::scheduler::ModelId,
    pub(crate) cores_per_instance: usize,
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
    /// The instances that take calls, in replica order; replaced whole on a move. Lock order:
    /// `instances`, then `retired`.
    instances: RwLock<Arc<Vec<Arc<Instance>>>>,
    /// Retired instances whose workers may still be finishing accepted calls.
    retired: Mutex<Vec<Arc<Instance>>>,
    /// Set (under the `instances` write lock) once the model is unloaded: no instance is
    /// added after it.
    closed: AtomicBool,
    /// Elastic instances asked for; the wide session, when the instances allow one (the
    /// first replica's worker runs wide calls on it).
    pub(crate) elastic_asked: bool,
    pub(crate) wide: Arc<Mutex<Option<Wide>>>,
    /// Whether `wide` holds a session, readable without its lock (a wide call holds that
    /// lock while it runs).
    has_wide: AtomicBool,
    /// Calls in flight that recent calls found on arrival (`corral_dispatch::elastic`).
    pub(crate) arrivals_saw: AtomicU64,
    /// Round-robin position.
    pub(crate) next: AtomicUsize,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) warning: Option<String>,
    pub(crate) exec_timeout: Duration,
    /// Calls each instance's queue holds.
    pub(crate) queue_len_max: usize,
    pub(crate) factory: Factory,
    next_instance_id: AtomicU64,
    pub(crate) bounds: Bounds,
    pub(crate) moves: MoveCounts,
}

/// What starting an instance takes: the prepared model, where its cores' CPUs are, and the
/// runtime's scheduler and settings.
pub(crate) struct Factory {
    /// The engine's name (`auto` for one that chooses: see [`Model::engine`]).
    pub(crate) engine: &'static str,
    pub(crate) prepared: Arc<Prepared>,
    pub(crate) lease: Arc<Lease>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) model_id: crate::scheduler::ModelId,
    pub(crate) exec_timeout: Duration,
    pub(crate) run_max: usize,
    pub(crate) queue_len_max: usize,
}

pub(crate) struct Instance {
    /// Stable while the model is loaded: the replica index of the instances it was loaded
    /// with, and the next numbers for those the autopilot adds.
    pub(crate) id: u64,
    /// Changed by a move of the live instance ([`Model::relocate_instance`]).
    cores: Mutex<CoreSpan>,
    /// `None` once retired or unloaded.
    pub(crate) jobs: RwLock<Option<Sender<Job>>>,
    /// Moves for its worker to make between jobs.
    moves: Sender<worker::Relocation>,
    /// Calls queued or executing on this instance.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// How long its last execution took, written by its worker.
    pub(crate) last_compute_ns: Arc<AtomicU64>,
    pub(crate) executions: Arc<AtomicU64>,
    /// Live sequences held on it (a server's sequence batcher): it is not retired while any.
    pub(crate) held: AtomicUsize,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    /// Its process cores now.
    pub(crate) fn cores(&self) -> CoreSpan {
        *lock(&self.cores)
    }

    fn close(&self) {
        sync::write(&self.jobs).take();
    }

    fn join(&self) {
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Factory {
    /// Prepares a session on `cores` and starts its worker (pinned to the first core's CPUs).
    pub(crate) fn start(
        &self,
        model: &str,
        id: u64,
        cores: CoreSpan,
        recorder: &Arc<Recorder>,
        wide: &Arc<Mutex<Option<Wide>>>,
    ) -> Result<Arc<Instance>, LoadError> {
        let core_cpus: Vec<Vec<usize>> = cores.cores().map(|c| self.lease.core_cpus(c)).collect();
        let session = {
            let _timing = self.hold_to_time(model, cores);
            self.prepared.session(&SessionPlacement { core_cpus: core_cpus.clone() })
        }
        .map_err(|source| LoadError::Engine { model: model.to_owned(), source })?;
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(self.queue_len_max);
        // A rendezvous: a move is handed to the worker itself or not at all (a worker that
        // ended drops its end, failing the send), so no move waits in a queue nobody reads.
        let (moves_tx, moves_rx) = crossbeam_channel::bounded(0);
        let instance = Instance {
            id,
            cores: Mutex::new(cores),
            jobs: RwLock::new(Some(jobs_tx)),
            moves: moves_tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_compute_ns: Arc::new(AtomicU64::new(0)),
            executions: Arc::new(AtomicU64::new(0)),
            held: AtomicUsize::new(0),
            thread: Mutex::new(None),
        };
        let spec = worker::WorkerSpec {
            model: model.to_owned(),
            model_id: self.model_id,
            instance: id as usize,
            cores,
            first_core_cpus: core_cpus[0].clone(),
            cpus: core_cpus.concat(),
            scheduler: self.scheduler.clone(),
            recorder: recorder.clone(),
            executions: instance.executions.clone(),
            in_flight: instance.in_flight.clone(),
            last_compute_ns: instance.last_compute_ns.clone(),
            exec_timeout: self.exec_timeout,
            run_max: self.run_max,
            wide: wide.clone(),
        };
        let thread = worker::spawn(spec, session, jobs_rx, moves_rx)
            .map_err(|source| LoadError::Thread { model: model.to_owned(), source })?;
        *lock(&instance.thread) = Some(thread);
        Ok(Arc::new(instance))
    }

    /// Holds `cores` through the scheduler while an engine chooses by timing the model there
    /// (`Prepared::measures`), so the timing never overlaps other calls on them; waits at most
    /// the execution timeout, then lets it time beside them, saying so.
    fn hold_to_time(&self, model: &str, cores: CoreSpan) -> Option<crate::scheduler::Gang<'_>> {
        if !self.prepared.measures() {
            return None;
        }
        let deadline = Instant::now() + self.exec_timeout;
        let held = self.scheduler.acquire(cores, self.model_id, deadline).ok();
        if held.is_none() {
            tracing::warn!(model, "cores busy for {:?}: timing the engines beside their calls", self.exec_timeout);
        }
        held
    }

    /// The wide session over `span` (elastic instances).
    pub(crate) fn wide(&self, model: &str, span: CoreSpan) -> Result<Wide, LoadError> {
        let core_cpus: Vec<Vec<usize>> = span.cores().map(|c| self.lease.core_cpus(c)).collect();
        let cpus = core_cpus.concat();
        let session = {
            let _timing = self.hold_to_time(model, span);
            self.prepared.session(&SessionPlacement { core_cpus })
        }
        .map_err(|source| LoadError::Engine { model: model.to_owned(), source })?;
        Ok(Wide { span, session, cpus })
    }
}

/// Everything a model is made of (the runtime builds it).
pub(crate) struct Parts {
    pub(crate) name: String,
    pub(crate) id: crate::scheduler::ModelId,
    pub(crate) cores_per_instance: usize,
    pub(crate) instances: Vec<Arc<Instance>>,
    pub(crate) elastic_asked: bool,
    pub(crate) wide: Arc<Mutex<Option<Wide>>>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) warning: Option<String>,
    pub(crate) factory: Factory,
    pub(crate) bounds: Bounds,
}

impl ModelInner {
    pub(crate) fn new(parts: Parts) -> ModelInner {
        let has_wide = lock(&parts.wide).is_some();
        let next_instance_id = parts.instances.iter().map(|i| i.id + 1).max().unwrap_or(0);
        ModelInner {
            name: parts.name,
            id: parts.id,
            cores_per_instance: parts.cores_per_instance,
            inputs: parts.factory.prepared.inputs().to_vec(),
            outputs: parts.factory.prepared.outputs().to_vec(),
            instances: RwLock::new(Arc::new(parts.instances)),
            retired: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            elastic_asked: parts.elastic_asked,
            has_wide: AtomicBool::new(has_wide),
            wide: parts.wide,
            arrivals_saw: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            recorder: parts.recorder,
            warning: parts.warning,
            exec_timeout: parts.factory.exec_timeout,
            queue_len_max: parts.factory.queue_len_max,
            factory: parts.factory,
            next_instance_id: AtomicU64::new(next_instance_id),
            bounds: parts.bounds,
            moves: MoveCounts::default(),
        }
    }

    /// The instances taking calls now.
    pub(crate) fn current(&self) -> Arc<Vec<Arc<Instance>>> {
        sync::read(&self.instances).clone()
    }

    pub(crate) fn close_and_join(&self) {
        let (instances, retired) = {
            let list = sync::write(&self.instances);
            self.closed.store(true, Ordering::Release);
            let retired: Vec<Arc<Instance>> = std::mem::take(&mut *lock(&self.retired));
            (list.clone(), retired)
        };
        for instance in instances.iter().chain(&retired) {
            instance.close();
        }
        for instance in instances.iter().chain(&retired) {
            instance.join();
        }
    }

    /// The replica for a call: `corral_dispatch::replica::pick_free` on the calls in flight
    /// and the cores held now.
    fn pick(&self, instances: &[Arc<Instance>]) -> usize {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let scheduler = &self.factory.scheduler;
        corral_dispatch::replica::pick_free(
            start,
            instances.len(),
            |i| instances[i].in_flight.load(Ordering::Acquire),
            |i| scheduler.is_free(instances[i].cores()),
        )
    }
}

impl Drop for ModelInner {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

impl Model {
    /// How long a call may wait to start (`CORRAL_EXEC_TIMEOUT`).
    pub fn exec_timeout(&self) -> Duration {
        self.inner.exec_timeout
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// K, the cores each instance spans.
    pub fn cores_per_instance(&self) -> usize {
        self.inner.cores_per_instance
    }

    /// The engine the model runs on, and why and both engines' medians when it was chosen by
    /// measuring (`auto`).
    pub fn engine(&self) -> corral_cores::ModelEngine {
        match self.inner.factory.prepared.chosen() {
            Some(choice) => corral_cores::ModelEngine {
                engine: choice.engine,
                reason: Some(choice.reason),
                medians_us: choice.medians.into_iter().map(|(engine, d)| (engine, d.as_micros() as u64)).collect(),
            },
            None => corral_cores::ModelEngine { engine: self.inner.factory.engine.to_owned(), ..Default::default() },
        }
    }

    /// True when a lone call may run on every instance's core at once (elastic instances).
    pub fn elastic(&self) -> bool {
        self.inner.has_wide.load(Ordering::Acquire)
    }

    /// Calls queued or executing on each instance, in replica order.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.inner.current().iter().map(|i| i.in_flight.load(Ordering::Acquire)).collect()
    }

    /// Each instance's process cores, in replica order.
    pub fn instances(&self) -> Vec<CoreSpan> {
        self.inner.current().iter().map(|i| i.cores()).collect()
    }

    /// Each instance's id (stable while loaded; see [`Model::try_submit_to`]), in replica order.
    pub fn instance_ids(&self) -> Vec<u64> {
        self.inner.current().iter().map(|i| i.id).collect()
    }

    /// The autopilot's bounds of this model (`corral_dispatch::autopilot::bounds`, when it was
    /// loaded).
    pub fn bounds(&self) -> Bounds {
        self.inner.bounds
    }

    /// This model as the autopilot sees it with `demand` (`None`: no turn of the autopilot,
    /// its count kept): what the controller hands `decide` every interval, made by
    /// `corral_dispatch::autopilot::view` as the planner's simulator makes its own.
    pub fn autopilot_view(&self, demand: Option<Demand>) -> ModelView {
        self.view(&self.inner.current(), demand)
    }

    /// [`Model::autopilot_view`] of `instances`, a list of this model's read once.
    pub(crate) fn view(&self, instances: &[Arc<Instance>], demand: Option<Demand>) -> ModelView {
        let instances = instances
            .iter()
            .map(|i| InstanceView { id: i.id, span: i.cores(), held: i.held.load(Ordering::Acquire) > 0 })
            .collect();
        autopilot::view(self.inner.bounds, self.inner.cores_per_instance, instances, demand)
    }

    /// Instances the autopilot started, retired and relocated, so far.
    pub fn moves(&self) -> (u64, u64, u64) {
        let m = &self.inner.moves;
        (m.grow.load(Ordering::Relaxed), m.shrink.load(Ordering::Relaxed), m.relocate.load(Ordering::Relaxed))
    }

    /// Marks instance `id` as holding a live sequence (it is not retired until released);
    /// false when it is not one of the model's instances.
    pub fn hold(&self, id: u64) -> bool {
        // Under the list's read lock: a retirement checks the holds under its write lock, so
        // it either sees this one or removes the instance before it is found here.
        let instances = sync::read(&self.inner.instances);
        match instances.iter().find(|i| i.id == id) {
            Some(instance) => {
                instance.held.fetch_add(1, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    /// Ends one hold of [`Model::hold`].
    pub fn release(&self, id: u64) {
        let instances = self.inner.current();
        let retired = lock(&self.inner.retired);
        if let Some(instance) = instances.iter().chain(retired.iter()).find(|i| i.id == id) {
            let _ = instance.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Starts an instance on `cores` (its session prepared and its worker pinned first), then
    /// lets it take calls; returns its id. The wide session, if any, is rebuilt over the new
    /// set of instances. The autopilot's move (`autopilot.rs`), which keeps the runtime's
    /// layout in step; `cores` must be K of the process's cores.
    pub(crate) fn add_instance(&self, cores: CoreSpan) -> Result<u64, LoadError> {
        let inner = &self.inner;
        let id = inner.next_instance_id.fetch_add(1, Ordering::Relaxed);
        let instance = inner.factory.start(&inner.name, id, cores, &inner.recorder, &inner.wide)?;
        {
            let mut list = sync::write(&inner.instances);
            if inner.closed.load(Ordering::Acquire) {
                // Unloaded while the session was prepared: this instance never takes a call.
                drop(list);
                instance.close();
                instance.join();
                return Err(LoadError::NotFound { name: inner.name.clone() });
            }
            let mut next: Vec<Arc<Instance>> = list.as_ref().clone();
            next.push(instance);
            *list = Arc::new(next);
        }
        self.rebuild_wide();
        self.reap();
        Ok(id)
    }

    /// Moves live instance `id` to `cores` (their CPUs taken by the caller in the layout), if
    /// its session can move itself (`Session::repin`, a Python model's stub): its worker makes
    /// the move after the job it runs, the calls queued behind run on the new cores, and the
    /// instance keeps its id, queue, statistics and any sequence it holds. False when it
    /// cannot (or is gone): the caller then starts a new instance there instead.
    pub(crate) fn relocate_instance(&self, id: u64, cores: CoreSpan) -> bool {
        if !self.inner.factory.prepared.moves_live() {
            return false;
        }
        let Some(instance) = self.inner.current().iter().find(|i| i.id == id).cloned() else { return false };
        let core_cpus: Vec<Vec<usize>> = cores.cores().map(|c| self.inner.factory.lease.core_cpus(c)).collect();
        let (done, answer) = crossbeam_channel::bounded(1);
        if instance.moves.send(worker::Relocation { cores, core_cpus, done }).is_err() {
            return false;
        }
        // The worker takes it after the jobs it runs (or fails the send by ending: an unload)
        // and always answers.
        if !answer.recv().unwrap_or(false) {
            return false;
        }
        *lock(&instance.cores) = cores;
        self.rebuild_wide();
        true
    }

    /// Retires instance `id`: no new call reaches it from now on, and its worker ends after
    /// the calls it accepted. False when it is not one of the model's instances, when it holds
    /// live sequences, or when it is the last one.
    pub(crate) fn retire_instance(&self, id: u64) -> bool {
        let inner = &self.inner;
        let retired = {
            let mut list = sync::write(&inner.instances);
            let Some(position) = list.iter().position(|i| i.id == id) else { return false };
            if list.len() == 1 || list[position].held.load(Ordering::Acquire) > 0 {
                return false;
            }
            let mut next: Vec<Arc<Instance>> = list.as_ref().clone();
            let retired = next.remove(position);
            *list = Arc::new(next);
            // Still under the list's lock, so an unload sees it in one list or the other.
            lock(&inner.retired).push(retired.clone());
            retired
        };
        retired.close();
        self.rebuild_wide();
        self.reap();
        true
    }

    /// Whether an instance runs on process core `core`: one taking calls, or a retired one
    /// still finishing those it accepted.
    pub(crate) fn uses_core(&self, core: usize) -> bool {
        self.reap();
        let on = |i: &Arc<Instance>| i.cores().contains(core);
        self.inner.current().iter().any(on) || lock(&self.inner.retired).iter().any(on)
    }

    /// Joins retired workers that have finished.
    fn reap(&self) {
        let finished: Vec<Arc<Instance>> = {
            let mut retired = lock(&self.inner.retired);
            let (done, running): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|i| lock(&i.thread).as_ref().is_none_or(JoinHandle::is_finished));
            *retired = running;
            done
        };
        for instance in finished {
            instance.join();
        }
    }

    /// The wide session over the current instances, when elastic instances were asked for
    /// and they allow one (single-core replicas on adjacent cores).
    fn rebuild_wide(&self) {
        let inner = &self.inner;
        if !inner.elastic_asked {
            return;
        }
        let span = corral_dispatch::elastic::wide_span(inner.cores_per_instance, &self.instances());
        let wide = span.and_then(|span| match inner.factory.wide(&inner.name, span) {
            Ok(wide) => Some(wide),
            Err(error) => {
                tracing::warn!(model = %inner.name, %error, "cannot prepare the wide session; calls run on replicas");
                None
            }
        });
        let mut slot = lock(&inner.wide);
        inner.has_wide.store(wide.is_some(), Ordering::Release);
        *slot = wide;
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inner.inputs
    }

    /// Whether an instance can take a call now (see `Prepared::can_take_calls`): a server
    /// reports the model not ready while none can.
    pub fn can_take_calls(&self) -> bool {
        self.inner.factory.prepared.can_take_calls()
    }

    /// The configuration the model's engine completed (a Python model's
    /// `auto_complete_config`), as Triton's JSON mapping.
    pub fn completed_config(&self) -> Option<&str> {
        self.inner.factory.prepared.completed_config()
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.inner.outputs
    }

    /// The warning its load raised (shared cores), if any.
    pub fn warning(&self) -> Option<&str> {
        self.inner.warning.as_deref()
    }

    /// Counts a call a front end refused for its inputs before calling (a server checks
    /// requests in its protocol's words first), as the model's own check would have: one
    /// request, one input failure.
    pub fn count_refused_input(&self) {
        self.inner.recorder.request();
        self.inner.recorder.input_failure();
    }

    pub fn stats(&self) -> ModelStats {
        let mut stats = self.inner.recorder.snapshot();
        stats.instances = self
            .inner
            .current()
            .iter()
            .map(|i| crate::stats::InstanceStats {
                id: i.id,
                cores: i.cores(),
                executions: i.executions.load(Ordering::Relaxed),
                in_flight: i.in_flight.load(Ordering::Acquire),
            })
            .collect();
        stats
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
        self.enqueue(inputs, true, None)
    }

    /// [`Model::submit`] that never waits: a full queue fails the call at once with
    /// [`InferError::QueueFull`] (an async caller must not block its executor's thread).
    pub fn try_submit(&self, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, false, None)
    }

    /// [`Model::try_submit`] to the instance of id `instance` ([`Model::instance_ids`]): its
    /// calls run in the order they were submitted, as a sequence's must.
    pub fn try_submit_to(&self, instance: u64, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, false, Some(instance))
    }

    /// [`Model::try_submit`] of a batch of several calls (the dynamic batcher's), their rows
    /// `parts` of the first dimension, in order, handed to the engine as such
    /// (`Session::run_parts`).
    pub fn try_submit_parts(&self, inputs: Vec<Tensor>, parts: Vec<usize>) -> Result<Reply, InferError> {
        self.enqueue_full(inputs, false, None, None, Some(parts))
    }

    /// [`Model::try_submit`] of a decoupled model's request: its responses go to `responses`
    /// as the model sends them; the [`Reply`] answers (with no outputs) once the last was sent.
    pub fn try_submit_streaming(
        &self,
        inputs: Vec<Tensor>,
        responses: corral_engine::Responses,
    ) -> Result<Reply, InferError> {
        self.enqueue_full(inputs, false, None, Some(responses), None)
    }

    fn enqueue(&self, inputs: Vec<Tensor>, wait_for_room: bool, to: Option<u64>) -> Result<Reply, InferError> {
        self.enqueue_full(inputs, wait_for_room, to, None, None)
    }

    fn enqueue_full(
        &self,
        inputs: Vec<Tensor>,
        wait_for_room: bool,
        to: Option<u64>,
        responses: Option<corral_engine::Responses>,
        parts: Option<Vec<usize>>,
    ) -> Result<Reply, InferError> {
        let mut parts = parts;
        let mut responses = responses;
        let inner = &self.inner;
        inner.recorder.request();
        let failed = |error: InferError| {
            match error {
                InferError::Input { .. } => inner.recorder.input_failure(),
                _ => inner.recorder.failure(),
            }
            Err(error)
        };
        if let Err(source) = corral_engine::validate_inputs(&inner.inputs, &inputs) {
            return failed(InferError::Input { model: inner.name.clone(), source });
        }
        let mut job = Some(inputs);
        // A move may retire the instance picked from the list read here: its closed queue sends
        // the call back to pick again from the new list (`PICKS_MAX` times in all).
        for _ in 0..PICKS_MAX {
            let instances = inner.current();
            // Elastic: `corral_dispatch::elastic` decides whether the call goes to the first
            // replica marked wide; its worker runs it on all the cores if they are still free
            // when it starts.
            let wide = to.is_none() && inner.has_wide.load(Ordering::Acquire) && {
                let seen: u64 = instances.iter().map(|i| i.in_flight.load(Ordering::Acquire) as u64).sum();
                let before = Arrivals { average: inner.arrivals_saw.load(Ordering::Relaxed) };
                let (after, wide) = before.arrive(seen);
                inner.arrivals_saw.store(after.average, Ordering::Relaxed);
                wide
            };
            let instance = match to {
                Some(id) => match instances.iter().find(|i| i.id == id) {
                    Some(instance) => instance,
                    None => return failed(InferError::Unloaded { model: inner.name.clone() }),
                },
                None if wide => &instances[0],
                None => &instances[inner.pick(&instances)],
            };
            let Some(sender) = sync::read(&instance.jobs).clone() else {
                if to.is_none() && !Arc::ptr_eq(&instances, &inner.current()) {
                    continue; // retired under us: pick again from the new list
                }
                return failed(InferError::Unloaded { model: inner.name.clone() });
            };
            let inputs = job.take().expect("a call is sent once");
            let before = instance.in_flight.fetch_add(1, Ordering::AcqRel);
            let patience = wait::caller_patience(before, instance.last_compute_ns.load(Ordering::Relaxed));
            let (reply_tx, reply) = worker::reply_pair(patience);
            let now = Instant::now();
            let job = Job {
                inputs,
                queued_at: now,
                deadline: now + inner.exec_timeout,
                reply: reply_tx,
                wide: wide && responses.is_none(),
                responses: responses.take(),
                parts: parts.take(),
            };
            let sent = if wait_for_room {
                sender.send_timeout(job, inner.exec_timeout)
            } else {
                sender.try_send(job).map_err(|error| match error {
                    TrySendError::Full(job) => SendTimeoutError::Timeout(job),
                    TrySendError::Disconnected(job) => SendTimeoutError::Disconnected(job),
                })
            };
            return match sent {
                Ok(()) => Ok(reply),
                Err(error) => {
                    instance.in_flight.fetch_sub(1, Ordering::AcqRel);
                    let (job, error) = match error {
                        SendTimeoutError::Timeout(job) if wait_for_room => {
                            (job, InferError::Timeout { model: inner.name.clone(), waited: inner.exec_timeout })
                        }
                        SendTimeoutError::Timeout(job) => (
                            job,
                            InferError::QueueFull { model: inner.name.clone(), queue_len_max: inner.queue_len_max },
                        ),
                        SendTimeoutError::Disconnected(job) => {
                            (job, InferError::Unloaded { model: inner.name.clone() })
                        }
                    };
                    // No worker will see this job: answer its reply here.
                    job.reply.send(Err(error.clone()));
                    failed(error)
                }
            };
        }
        failed(InferError::Unloaded { model: inner.name.clone() })
    }
}
