//! One worker thread per instance: it owns the instance's engine session, is pinned to the
//! instance's first core's CPUs (the engine pins its own extra threads to the other cores),
//! and executes the jobs callers queue for it.
//!
//! # Worker loop
//!
//! 1. Receive a job from the instance's bounded queue; the queue closing (unload) ends the
//!    loop after the jobs already queued are done, so accepted calls complete.
//! 2. Take the instance's gang from the scheduler, waiting at most until the job's deadline
//!    (the call fails with a timeout if it cannot start in time).
//! 3. Execute; then, while the gang is still held, take more already-queued jobs of this
//!    instance, up to `run_max` in a row: same-model calls are batched on a shared core
//!    instead of paying a switch each. The run limit and the scheduler's aging bound the
//!    wait of other models.
//! 4. Release the gang, reply, repeat. A panicking engine fails the call, not the worker.
//!
//! A move (the autopilot's, or cores that left): the worker takes a [`Relocation`] between
//! jobs, asks its session to move itself ([`Session::repin`]) and, when it did, re-pins itself
//! and takes the new cores from the scheduler for the next jobs. A session that cannot move
//! answers so, and the runtime starts a new instance instead. The mover waits on the worker
//! holding no lock, and the worker holds no gang while it moves (it takes moves only between
//! jobs), so a move cannot deadlock with calls; the hand-over is a rendezvous channel, so a
//! worker that ended (unloaded) fails the send rather than leave the mover waiting.
//!
//! Elastic instances: an elastic model has a wide session spanning every instance's core,
//! shared by its workers (rebuilt when its instances move). A job marked wide (see `Model`'s
//! enqueue; it goes to the first replica) first tries, without waiting, to take all those
//! cores; if it gets them it runs on the wide session and releases them at once, else it runs
//! as any other job. A wide run never waits for cores, so it can only ever use cores nobody
//! else wanted at that moment.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use corral_cores::sync;
use corral_engine::{Session, Tensor};
use corral_placement::CoreSpan;
use crossbeam_channel::Receiver;

use crate::{
    error::InferError,
    scheduler::{Gang, ModelId, Scheduler},
    stats::Recorder,
    wait::{Executing, Patience, SPIN_MAX, caller_spin_until, spin_until},
};

/// The answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Inference {
    pub outputs: Vec<Tensor>,
    /// A batch of several requests some of which failed (`Model::try_submit_parts` of a Python
    /// model): each part's error, `None` for those whose rows `outputs` holds, in order.
    /// Empty: every part succeeded.
    pub failed_parts: Vec<Option<String>>,
    /// Which replica ran it, and on which process cores.
    pub instance: usize,
    pub cores: CoreSpan,
    /// When the engine started on it, and for how long it ran.
    pub started: Instant,
    pub compute: Duration,
}

/// One call waiting for its instance.
pub(crate) struct Job {
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) queued_at: Instant,
    pub(crate) deadline: Instant,
    pub(crate) reply: ReplySender,
    /// Found every replica idle: may run on the wide session (elastic instances).
    pub(crate) wide: bool,
    /// A decoupled model's request: where its responses go as they are sent.
    pub(crate) responses: Option<corral_engine::Responses>,
    /// A batch of several calls: their rows, in order (`Session::run_parts`).
    pub(crate) parts: Option<Vec<usize>>,
}

/// Moves a live instance to `cores`; the worker answers on `done` whether its session moved.
pub(crate) struct Relocation {
    pub(crate) cores: CoreSpan,
    pub(crate) core_cpus: Vec<Vec<usize>>,
    pub(crate) done: crossbeam_channel::Sender<bool>,
}

/// An elastic model's wide session and the cores it spans.
pub(crate) struct Wide {
    pub(crate) span: CoreSpan,
    pub(crate) session: Box<dyn Session>,
    /// Every CPU of the span's cores.
    pub(crate) cpus: Vec<usize>,
}

/// What a worker needs besides its session.
pub(crate) struct WorkerSpec {
    /// The model's wide session, if any (elastic instances).
    pub(crate) wide: Arc<Mutex<Option<Wide>>>,
    /// This instance's executions.
    pub(crate) executions: Arc<AtomicU64>,
    pub(crate) model: String,
    pub(crate) model_id: ModelId,
    pub(crate) instance: usize,
    pub(crate) cores: CoreSpan,
    pub(crate) first_core_cpus: Vec<usize>,
    /// Every CPU of the instance's cores (its engine threads run on the others).
    pub(crate) cpus: Vec<usize>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) last_compute_ns: Arc<AtomicU64>,
    pub(crate) exec_timeout: Duration,
    pub(crate) run_max: usize,
}

pub(crate) fn spawn(
    spec: WorkerSpec,
    session: Box<dyn Session>,
    jobs: Receiver<Job>,
    moves: Receiver<Relocation>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("corral-nc{}", spec.cores.first))
        .spawn(move || run(spec, session, jobs, moves))
}

fn run(mut spec: WorkerSpec, mut session: Box<dyn Session>, jobs: Receiver<Job>, moves: Receiver<Relocation>) {
    if let Err(error) = corral_cores::pin_thread(&spec.first_core_cpus) {
        tracing::warn!(model = %spec.model, %error, "cannot pin the worker thread");
    }
    loop {
        if let Ok(to) = moves.try_recv() {
            relocate(&mut spec, session.as_mut(), to);
        }
        // An idle worker spins briefly before parking, so back-to-back calls skip a wake-up.
        let mut job = None;
        spin_until(SPIN_MAX, || {
            job = jobs.try_recv().ok();
            job.is_some()
        });
        let job = match job {
            Some(job) => job,
            None => crossbeam_channel::select! {
                recv(jobs) -> job => match job {
                    Ok(job) => job,
                    Err(_) => break, // unloaded and drained
                },
                recv(moves) -> to => {
                    match to {
                        Ok(to) => relocate(&mut spec, session.as_mut(), to),
                        // The instance is gone: only its queue's end is left to wait for.
                        Err(_) => match jobs.recv() {
                            Ok(job) => {
                                run_jobs(&spec, session.as_mut(), &jobs, job);
                                continue;
                            }
                            Err(_) => break,
                        },
                    }
                    continue;
                }
            },
        };
        run_jobs(&spec, session.as_mut(), &jobs, job);
    }
}

/// Moves the worker and its session to `to`'s cores, if the session can move (it answers).
fn relocate(spec: &mut WorkerSpec, session: &mut dyn Session, to: Relocation) {
    let placement = corral_engine::SessionPlacement { core_cpus: to.core_cpus.clone() };
    let moved = match std::panic::catch_unwind(AssertUnwindSafe(|| session.repin(&placement))) {
        Ok(Ok(moved)) => moved,
        Ok(Err(error)) => {
            tracing::warn!(model = %spec.model, %error, "cannot move the live instance: a new one starts instead");
            false
        }
        Err(_) => {
            tracing::warn!(model = %spec.model, "the engine panicked moving the live instance: a new one starts instead");
            false
        }
    };
    if moved {
        if let Err(error) = corral_cores::pin_thread(&to.core_cpus[0]) {
            tracing::warn!(model = %spec.model, %error, "cannot pin the worker thread");
        }
        spec.cores = to.cores;
        spec.first_core_cpus = to.core_cpus[0].clone();
        spec.cpus = to.core_cpus.concat();
    }
    let _ = to.done.send(moved);
}

/// Runs `job` and the jobs queued behind it that may follow it on the same gang.
fn run_jobs(spec: &WorkerSpec, session: &mut dyn Session, jobs: &Receiver<Job>, job: Job) {
    let timeout = |spec: &WorkerSpec| InferError::Timeout { model: spec.model.clone(), waited: spec.exec_timeout };
    if Instant::now() >= job.deadline {
        return fail(spec, job, timeout(spec));
    }
    let job = if job.wide { run_wide(spec, job) } else { Some(job) };
    let Some(job) = job else { return };
    let Ok(mut gang) = spec.scheduler.acquire(spec.cores, spec.model_id, job.deadline) else {
        return fail(spec, job, timeout(spec));
    };
    let mut next = Some(job);
    let mut in_a_row = 0;
    while let Some(job) = next.take() {
        execute(spec, session, &mut gang, job, spec.cores, &spec.cpus);
        in_a_row += 1;
        if corral_dispatch::runs::continues(in_a_row, spec.run_max) {
            match jobs.try_recv() {
                Ok(job) if Instant::now() < job.deadline => next = Some(job),
                Ok(job) => fail(spec, job, timeout(spec)),
                Err(_) => {}
            }
        }
    }
}

/// Runs a wide job on the wide session if every core of it is free now (`None`: done), else
/// gives it back to run as any other.
fn run_wide(spec: &WorkerSpec, job: Job) -> Option<Job> {
    let mut cell = sync::lock(&spec.wide);
    let Some(wide) = cell.as_mut() else { return Some(job) };
    match spec.scheduler.acquire(wide.span, spec.model_id, Instant::now()) {
        Ok(mut gang) => {
            let (span, cpus) = (wide.span, wide.cpus.clone());
            execute(spec, wide.session.as_mut(), &mut gang, job, span, &cpus);
            None
        }
        Err(_) => Some(job),
    }
}

/// Runs `job` on `session` within `gang` (whose cores are `cores`, on `cpus`), records it,
/// and replies.
fn execute(
    spec: &WorkerSpec,
    session: &mut dyn Session,
    gang: &mut Gang<'_>,
    job: Job,
    cores: CoreSpan,
    cpus: &[usize],
) {
    if !job.reply.start() {
        // Its caller gave up (and failed the call) while it waited in the queue.
        spec.recorder.failure();
        spec.in_flight.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let switched = gang.take_switched();
    let executing = Executing::on(cpus);
    let started = Instant::now();
    let mut job = job;
    let mut responses = job.responses.take();
    let mut failed_parts = Vec::new();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match (responses.as_mut(), &job.parts) {
        (Some(responses), _) => {
            session.run_streaming(&job.inputs, switched, &mut Loan(gang), responses).map(|()| Vec::new())
        }
        (None, Some(parts)) => session.run_parts(&job.inputs, parts, switched, &mut Loan(gang)).map(|parts| {
            failed_parts = parts.failed;
            parts.outputs
        }),
        (None, None) => session.run_lending(&job.inputs, switched, &mut Loan(gang)),
    }));
    let compute = started.elapsed();
    drop(executing);
    gang.record(compute);
    spec.last_compute_ns.store(compute.as_nanos() as u64, Ordering::Relaxed);
    let result = match outcome {
        Ok(Ok(outputs)) => {
            spec.recorder.execution(started - job.queued_at, compute);
            spec.executions.fetch_add(1, Ordering::Relaxed);
            spec.recorder.latency(job.queued_at.elapsed());
            Ok(Inference { outputs, failed_parts, instance: spec.instance, cores, started, compute })
        }
        Ok(Err(error)) => Err(InferError::Engine { model: spec.model.clone(), source: error }),
        Err(_) => Err(InferError::Internal(format!("the engine panicked running {}", spec.model))),
    };
    if result.is_err() {
        spec.recorder.failure();
    }
    // Done before the reply: a caller that submits again at once must find this replica idle.
    spec.in_flight.fetch_sub(1, Ordering::AcqRel);
    job.reply.send(result);
}

/// A gang as a session lends its cores (a Python model's BLS call); they are back in the
/// gang when the execution ends, even if the session panicked.
struct Loan<'g, 'a>(&'g mut Gang<'a>);

impl corral_engine::CoreLoan for Loan<'_, '_> {
    fn lend(&mut self) {
        self.0.lend();
    }

    fn reclaim(&mut self) {
        self.0.reclaim();
    }
}

impl Drop for Loan<'_, '_> {
    fn drop(&mut self) {
        self.0.reclaim();
    }
}

fn fail(spec: &WorkerSpec, job: Job, error: InferError) {
    spec.recorder.failure();
    spec.in_flight.fetch_sub(1, Ordering::AcqRel);
    job.reply.send(Err(error));
}

/// The answer, once there is one, and the waker of an async caller waiting for it.
#[derive(Default)]
struct SlotState {
    answer: Option<Result<Inference, InferError>>,
    waker: Option<Waker>,
    /// A blocking caller sleeps on the condvar: only then is a notify (a syscall) needed.
    sleeping: bool,
    /// A worker began executing the call: its caller can no longer give up on it.
    started: bool,
    /// The caller gave up before a worker began it ([`Reply::abandon`]): it is skipped.
    abandoned: bool,
}

#[derive(Default)]
struct ReplyCell {
    state: Mutex<SlotState>,
    ready: Condvar,
    /// Set after `state.answer`, so a spinning caller can look without the lock.
    answered: AtomicBool,
}

/// The worker's end of a call's reply. Dropping it unsent fails the call, so a caller never
/// waits forever on a worker that is gone.
pub(crate) struct ReplySender {
    cell: Arc<ReplyCell>,
    sent: bool,
}

/// The caller's end: [`Reply::wait`] blocks, or `.await` it.
pub struct Reply {
    cell: Arc<ReplyCell>,
    /// When a blocking wait's nap ends, if it naps (see [`crate::wait`]).
    nap_until: Option<Instant>,
    /// How long it then spins before sleeping.
    spin: Duration,
}

pub(crate) fn reply_pair(patience: Patience) -> (ReplySender, Reply) {
    let cell = Arc::new(ReplyCell::default());
    let nap_until = (!patience.nap.is_zero()).then(|| Instant::now() + patience.nap);
    (ReplySender { cell: cell.clone(), sent: false }, Reply { cell, nap_until, spin: patience.spin })
}

impl ReplySender {
    /// Marks the call begun; false when its caller gave up on it first (then it is not run).
    pub(crate) fn start(&self) -> bool {
        let mut state = sync::lock(&self.cell.state);
        state.started = !state.abandoned;
        state.started
    }

    pub(crate) fn send(mut self, result: Result<Inference, InferError>) {
        self.put(result);
    }

    fn put(&mut self, result: Result<Inference, InferError>) {
        self.sent = true;
        let mut state = sync::lock(&self.cell.state);
        state.answer = Some(result);
        self.cell.answered.store(true, Ordering::Release);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        let sleeping = state.sleeping;
        drop(state);
        if sleeping {
            self.cell.ready.notify_all();
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        if !self.sent {
            self.put(Err(InferError::Internal("the worker stopped before answering".to_owned())));
        }
    }
}

impl Reply {
    /// Gives up on a call no worker has begun (an async caller whose exec timeout passed
    /// while the call sat queued behind a long execution): true when given up (the worker
    /// will skip it), false when it already began or was answered (wait for it).
    pub fn abandon(&self) -> bool {
        let mut state = sync::lock(&self.cell.state);
        if state.started || state.answer.is_some() {
            return false;
        }
        state.abandoned = true;
        true
    }

    /// Blocks until the call is answered (napping, then spinning first when the answer's
    /// time can be told: see [`crate::wait`]).
    pub fn wait(self) -> Result<Inference, InferError> {
        if let Some(result) = self.nap_until.and_then(|until| self.sleep(Some(until))) {
            return result;
        }
        caller_spin_until(self.spin, || self.cell.answered.load(Ordering::Acquire));
        self.sleep(None).expect("an untimed sleep ends with the answer")
    }

    /// Blocks at most `timeout`; gives the reply back when no answer came in time, so the
    /// caller can do something else (look for a signal) and wait again.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<Inference, InferError>, Reply> {
        let deadline = Instant::now() + timeout;
        if let Some(result) = self.nap_until.and_then(|until| self.sleep(Some(until.min(deadline)))) {
            return Ok(result);
        }
        caller_spin_until(self.spin, || self.cell.answered.load(Ordering::Acquire));
        match self.sleep(Some(deadline)) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// Sleeps until the answer comes (and returns it), or until `until` if given (then None).
    fn sleep(&self, until: Option<Instant>) -> Option<Result<Inference, InferError>> {
        let mut state = sync::lock(&self.cell.state);
        loop {
            if let Some(result) = state.answer.take() {
                return Some(result);
            }
            state.sleeping = true;
            state = match until {
                None => sync::wait(&self.cell.ready, state),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sleeping = false;
                        return None;
                    }
                    sync::wait_timeout(&self.cell.ready, state, left)
                }
            };
        }
    }
}

impl Future for Reply {
    type Output = Result<Inference, InferError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = sync::lock(&self.cell.state);
        match state.answer.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
