//! [`Model`]: a loaded model's handle, its instances, and the call paths (blocking, with a
//! timeout, async), which pick a replica and queue the call on it.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use corral_engine::{Tensor, TensorSpec};
use corral_placement::CoreSpan;
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::{
    error::InferError,
    stats::{ModelStats, Recorder},
    wait,
    worker::{self, Inference, Job, Reply},
};

/// A loaded model: call it from any number of threads.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

pub(crate) struct ModelInner {
    pub(crate) name: String,
    /// The scheduler's id of this load (a reload gets a new one).
    pub(crate) id: crate::scheduler::ModelId,
    pub(crate) cores_per_instance: usize,
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
    pub(crate) instances: Vec<Instance>,
    /// Instance 0 also holds a wide session over every instance's core (elastic instances).
    pub(crate) elastic: bool,
    /// Calls in flight that recent calls found on arrival, averaged (×1000, 1/8 weight each).
    pub(crate) arrivals_saw: AtomicU64,
    /// Round-robin position.
    pub(crate) next: AtomicUsize,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) warning: Option<String>,
    pub(crate) exec_timeout: Duration,
    /// Calls each instance's queue holds.
    pub(crate) queue_len_max: usize,
}

pub(crate) struct Instance {
    pub(crate) cores: CoreSpan,
    /// `None` once unloaded.
    pub(crate) jobs: RwLock<Option<Sender<Job>>>,
    /// Calls queued or executing on this instance.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// How long its last execution took, written by its worker.
    pub(crate) last_compute_ns: Arc<AtomicU64>,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
}

impl ModelInner {
    pub(crate) fn close_and_join(&self) {
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

    /// True when a lone call may run on every instance's core at once (elastic instances).
    pub fn elastic(&self) -> bool {
        self.inner.elastic
    }

    /// Each instance's process cores.
    /// Calls queued or executing on each instance, in replica order.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.inner.instances.iter().map(|i| i.in_flight.load(Ordering::Acquire)).collect()
    }

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

    /// Counts a call a front end refused for its inputs before calling (a server checks
    /// requests in its protocol's words first), as the model's own check would have: one
    /// request, one input failure.
    pub fn count_refused_input(&self) {
        self.inner.recorder.request();
        self.inner.recorder.input_failure();
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
        self.enqueue(inputs, true, None)
    }

    /// [`Model::submit`] that never waits: a full queue fails the call at once with
    /// [`InferError::QueueFull`] (an async caller must not block its executor's thread).
    pub fn try_submit(&self, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, false, None)
    }

    /// [`Model::try_submit`] to one instance (`instance < instances().len()`): its calls run
    /// in the order they were submitted, as a sequence's must.
    pub fn try_submit_to(&self, instance: usize, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.enqueue(inputs, false, Some(instance % self.inner.instances.len()))
    }

    fn enqueue(&self, inputs: Vec<Tensor>, wait_for_room: bool, to: Option<usize>) -> Result<Reply, InferError> {
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
        // Elastic: a call that finds every replica idle, while recent calls found the model
        // mostly idle too, goes to instance 0 marked wide; its worker runs it on all the cores
        // if they are still free when it starts. Under steady traffic of two or more callers
        // arrivals keep finding calls in flight, so a gap between calls does not make the next
        // one wide and the call after it wait (measured: c2 over gRPC lost 18% without this).
        let wide = to.is_none() && inner.elastic && {
            let seen: u64 = inner.instances.iter().map(|i| i.in_flight.load(Ordering::Acquire) as u64).sum();
            let before = inner.arrivals_saw.load(Ordering::Relaxed);
            let average = before - before / 8 + seen * 1000 / 8;
            inner.arrivals_saw.store(average, Ordering::Relaxed);
            seen == 0 && average < ELASTIC_BUSY_MAX
        };
        let instance = &inner.instances[if wide { 0 } else { to.unwrap_or_else(|| inner.pick()) }];
        let Some(sender) = instance.jobs.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return failed(InferError::Unloaded { model: inner.name.clone() });
        };
        let before = instance.in_flight.fetch_add(1, Ordering::AcqRel);
        let patience = wait::caller_patience(before, instance.last_compute_ns.load(Ordering::Relaxed));
        let (reply_tx, reply) = worker::reply_pair(patience);
        let now = Instant::now();
        let job = Job { inputs, queued_at: now, deadline: now + inner.exec_timeout, reply: reply_tx, wide };
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

/// Above this average of calls found in flight on arrival (×1000), no call goes wide: the
/// model is busy enough that its replicas will be wanted.
const ELASTIC_BUSY_MAX: u64 = 250;

/// Locks `mutex`, taking it over from a thread that panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
