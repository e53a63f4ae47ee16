//! A discrete-event simulation of a process's runtime in virtual time: the same calls, the
//! same instances and the same dispatch rules as the threaded runtime, with the clock
//! advanced from event to event instead of waited for. Every decision is one of
//! `corral_dispatch`'s functions, which the threaded runtime calls too: the replica a call
//! goes to ([`replica::pick_free`], the cores' state read from the gang table), whether it
//! goes wide ([`elastic::Arrivals`]), which waiting gang takes its cores and what switches it
//! pays ([`GangTable`]), and how long a worker's run of its own model's calls lasts
//! ([`runs::continues`]).
//!
//! What each driver does around the rules is mirrored here step for step (see the runtime's
//! `model.rs` and `worker.rs`):
//!
//! 1. A call arrives: an elastic model records the calls it finds in flight and may mark it
//!    wide (then it goes to replica 0), else a replica is picked; a replica whose queue holds
//!    `queue_len_max` calls refuses it at once (an async caller's `QueueFull`), else it is
//!    queued with its deadline, `exec_timeout` after its arrival.
//! 2. An idle worker takes its queue's first call. A call past its deadline fails. A wide call
//!    takes every replica's core if they are free this instant (never waiting), runs there and
//!    releases them. Otherwise the worker joins the gang line for its own cores and goes when
//!    the table says so, or fails the call when its deadline passes first.
//! 3. An execution takes the model's latency, plus its switch cost on the gang's first
//!    execution when a core switched. When it ends the call is answered; while the run
//!    continues, the worker takes its queue's next call without releasing the gang (a call
//!    found past its deadline fails and ends the run); then it releases the gang, the
//!    waiters that may go now go in line order, and the worker takes its next call.
//!
//! With the autopilot on (`Spec::autopilot`), every interval each model's demand is
//! estimated from the simulated counters and `corral_dispatch::autopilot::decide` moves
//! instances, as the runtime's controller does, on views of the models made by the same
//! functions (`autopilot::bounds` when the run starts, `autopilot::view` every interval): a
//! new instance takes calls at once (a
//! simulated session is ready at once), a retired one takes no new call and finishes those it
//! accepted.
//!
//! Events at the same instant go in this order: executions ending, deadlines passing, the
//! autopilot, then arrivals (in model order). Nothing here reads a clock: the same inputs and
//! seed give the same run.

use std::{
    cmp::Ordering,
    collections::{BinaryHeap, VecDeque},
};

use corral_dispatch::{
    CoreSpan,
    autopilot::{self, Bounds, Counts, Demand, Estimator, InstanceView, ModelView, Move, Reading},
    elastic::{self, Arrivals},
    gangs::{GangTable, ModelId, Ticket},
    replica, runs,
};

use crate::arrivals::Rng;

/// How long one execution of a model takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Service {
    /// Every execution takes `latency` seconds, plus `switch` on a gang's first execution
    /// after a core changed model (a `sim` model's declaration).
    Fixed { latency: f64, switch: f64 },
    /// Execution times measured on the real device (seconds), drawn at random from the
    /// model's own stream: from `after_idle` when the instance waited for the call, from
    /// `samples` when it follows the instance's previous execution at once (see
    /// `profile.rs`); `switch` as above.
    Measured { samples: Vec<f64>, after_idle: Vec<f64>, switch: f64 },
}

impl Service {
    fn mean(&self) -> f64 {
        match self {
            Service::Fixed { latency, .. } => *latency,
            Service::Measured { samples, .. } => samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        }
    }

    /// The mean execution time in seconds.
    pub fn mean_seconds(&self) -> f64 {
        self.mean()
    }

    fn draw(&self, rng: &mut Rng, switched: bool, after_idle: bool) -> f64 {
        let (base, switch) = match self {
            Service::Fixed { latency, switch } => (*latency, *switch),
            Service::Measured { samples, after_idle: idle, switch } => {
                let samples = if after_idle && !idle.is_empty() { idle } else { samples };
                let i = ((rng.uniform() * samples.len() as f64) as usize).min(samples.len().saturating_sub(1));
                (samples.get(i).copied().unwrap_or(0.0), *switch)
            }
        };
        if switched { base + switch } else { base }
    }
}

/// One model as loaded: its instances (process cores), whether it is elastic, its timing.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub cores_per_instance: usize,
    pub instances: Vec<CoreSpan>,
    pub elastic: bool,
    pub service: Service,
    /// The autopilot's bounds in instances, `1 <= min <= max` (`None`: 1 to what the cores
    /// hold), as the runtime takes them (`corral_dispatch::autopilot::bounds`).
    pub bounds: Option<(usize, usize)>,
    /// Placed by legacy group: pinned at its count, whatever its bounds
    /// (`corral_dispatch::autopilot::bounds`, as the runtime pins it).
    pub grouped: bool,
}

/// A process to simulate: its cores, its runtime's settings and its models (in name order:
/// model `i` gets arrival stream `i`).
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub cores: usize,
    /// Seconds a call may wait to start (`CORRAL_EXEC_TIMEOUT`).
    pub exec_timeout: f64,
    pub queue_len_max: usize,
    pub run_max: usize,
    pub models: Vec<ModelSpec>,
    /// The autopilot's interval in seconds, when it is on.
    pub autopilot: Option<f64>,
}

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its replica's queue was full when it arrived.
    QueueFull,
    /// It could not start within the execution timeout.
    Timeout,
}

/// What became of one call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub model: usize,
    pub arrival: f64,
    /// The id of the instance it was queued on (a model's first instances are numbered from
    /// 0 in order, those the autopilot adds after them); `None` when its queue was full.
    pub instance: Option<usize>,
    /// Marked wide on arrival; once it started, whether it ran on the wide session.
    pub wide: bool,
    /// When its execution started, and on which cores.
    pub start: Option<f64>,
    pub cores: Option<CoreSpan>,
    /// When it was answered.
    pub end: f64,
    pub failure: Option<Failure>,
}

/// One core over the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreRecord {
    pub executions: u64,
    pub busy: f64,
    pub switches: u64,
}

/// A finished simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// By model, in arrival order.
    pub calls: Vec<Vec<CallRecord>>,
    pub cores: Vec<CoreRecord>,
    /// When the last call was answered.
    pub end: f64,
    /// Per model, the instances at the end, and the autopilot's moves (grow, shrink, move).
    pub instances: Vec<Vec<CoreSpan>>,
    pub moves: Vec<(u64, u64, u64)>,
    /// Each move as it happened: (simulated seconds, model, `grow`, `shrink` or `move`).
    pub move_times: Vec<(f64, usize, &'static str)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    ExecutionEnds,
    DeadlinePasses,
    Autopilot,
    Arrives,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    ExecutionEnds { instance: usize },
    DeadlinePasses { instance: usize, ticket: Ticket },
    Autopilot,
    Arrives { model: usize },
}

#[derive(Debug)]
struct Queued {
    at: f64,
    class: Class,
    /// The model (arrivals) or instance: ties in model order.
    order: usize,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed: the heap pops the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then(other.class.cmp(&self.class))
            .then(other.order.cmp(&self.order))
            .then(other.seq.cmp(&self.seq))
    }
}

#[derive(Debug)]
enum Worker {
    Idle,
    Waiting { call: (usize, usize), ticket: Ticket },
    Running { call: (usize, usize), span: CoreSpan, started: f64, in_a_row: usize, wide: bool },
}

struct Instance {
    model: usize,
    id: u64,
    span: CoreSpan,
    /// Calls queued and not yet taken by the worker, as (model, call index).
    queue: VecDeque<(usize, usize)>,
    /// Calls queued or executing (what replica choice reads).
    in_flight: usize,
    worker: Worker,
    /// When its last execution ended (`None`: it has not run yet).
    last_end: Option<f64>,
}

struct ModelState {
    /// Global indices of its instances, in replica order.
    instances: Vec<usize>,
    next: usize,
    arrivals: Arrivals,
    wide: Option<CoreSpan>,
    id: ModelId,
    rng: Rng,
    times: Vec<f64>,
    cursor: usize,
    next_id: u64,
    counts: Counts,
    estimate: Estimator,
    /// The autopilot's, as the runtime sets them when it loads the model.
    bounds: Bounds,
    moves: (u64, u64, u64),
}

struct Sim<'a> {
    spec: &'a Spec,
    now: f64,
    table: GangTable,
    instances: Vec<Instance>,
    models: Vec<ModelState>,
    calls: Vec<Vec<CallRecord>>,
    cores: Vec<CoreRecord>,
    events: BinaryHeap<Queued>,
    seq: u64,
    move_times: Vec<(f64, usize, &'static str)>,
}

/// Runs `spec` on `arrivals` (each model's arrival times, ascending, as
/// [`crate::arrivals::schedule`] makes them) until every call is answered. `seed` draws the
/// measured execution times (stream `models.len() + i` for model `i`).
pub fn simulate(spec: &Spec, arrivals: &[Vec<f64>], seed: u64) -> Run {
    let mut sim = Sim::new(spec, arrivals, seed);
    for m in 0..sim.models.len() {
        sim.next_arrival(m);
    }
    if let Some(interval) = spec.autopilot {
        sim.push(interval, Event::Autopilot);
    }
    while let Some(Queued { at, event, .. }) = sim.events.pop() {
        sim.now = at;
        match event {
            Event::Arrives { model } => sim.arrive(model),
            Event::ExecutionEnds { instance } => sim.execution_ends(instance),
            Event::DeadlinePasses { instance, ticket } => sim.deadline_passes(instance, ticket),
            Event::Autopilot => sim.autopilot(),
        }
    }
    let end = sim.calls.iter().flatten().map(|c| c.end).fold(0.0, f64::max);
    for (core, slot) in sim.cores.iter_mut().zip(sim.table.cores()) {
        core.switches = slot.switches;
    }
    let instances = sim.models.iter().map(|m| m.instances.iter().map(|&i| sim.instances[i].span).collect()).collect();
    let moves = sim.models.iter().map(|m| m.moves).collect();
    Run { calls: sim.calls, cores: sim.cores, end, instances, moves, move_times: sim.move_times }
}

/// The models of `spec` as the autopilot sees them before anything happens, with `demands`
/// (one per model): the views [`simulate`] hands `corral_dispatch::autopilot::decide` at its
/// first interval, had the estimates given those demands. A test holds them against the
/// runtime's (`Model::autopilot_view`) for the same models.
pub fn first_views(spec: &Spec, demands: &[Demand]) -> Vec<ModelView> {
    Sim::new(spec, &[], 0).views(demands)
}

impl<'a> Sim<'a> {
    /// The process of `spec` before anything happens: every model's instances numbered from 0
    /// in order, its arrivals (`arrivals`) and its draws (`seed`) ready.
    fn new(spec: &'a Spec, arrivals: &[Vec<f64>], seed: u64) -> Sim<'a> {
        let mut instances = Vec::new();
        let mut models = Vec::new();
        for (m, model) in spec.models.iter().enumerate() {
            let first = instances.len();
            for (id, &span) in model.instances.iter().enumerate() {
                instances.push(Instance {
                    model: m,
                    id: id as u64,
                    span,
                    queue: VecDeque::new(),
                    in_flight: 0,
                    worker: Worker::Idle,
                    last_end: None,
                });
            }
            let wide =
                if model.elastic { elastic::wide_span(model.cores_per_instance, &model.instances) } else { None };
            models.push(ModelState {
                instances: (first..instances.len()).collect(),
                next: 0,
                arrivals: Arrivals::default(),
                wide,
                id: m as ModelId + 1,
                rng: Rng::new(seed, (spec.models.len() + m) as u64),
                times: arrivals.get(m).cloned().unwrap_or_default(),
                cursor: 0,
                next_id: model.instances.len() as u64,
                counts: Counts::default(),
                estimate: Estimator::default(),
                bounds: autopilot::bounds(
                    model.bounds,
                    spec.cores,
                    model.cores_per_instance,
                    model.grouped.then_some(model.instances.len()),
                ),
                moves: (0, 0, 0),
            });
        }
        Sim {
            spec,
            now: 0.0,
            table: GangTable::new(spec.cores),
            instances,
            models,
            calls: vec![Vec::new(); spec.models.len()],
            cores: vec![CoreRecord::default(); spec.cores],
            events: BinaryHeap::new(),
            seq: 0,
            move_times: Vec::new(),
        }
    }

    fn push(&mut self, at: f64, event: Event) {
        let (class, order) = match event {
            Event::ExecutionEnds { instance } => (Class::ExecutionEnds, instance),
            Event::DeadlinePasses { instance, .. } => (Class::DeadlinePasses, instance),
            Event::Autopilot => (Class::Autopilot, 0),
            Event::Arrives { model } => (Class::Arrives, model),
        };
        self.seq += 1;
        self.events.push(Queued { at, class, order, seq: self.seq, event });
    }

    fn next_arrival(&mut self, model: usize) {
        let state = &self.models[model];
        if let Some(&at) = state.times.get(state.cursor) {
            self.push(at, Event::Arrives { model });
        }
    }

    /// Step 1.
    fn arrive(&mut self, model: usize) {
        let arrival = self.now;
        self.models[model].cursor += 1;
        self.models[model].counts.requests += 1;
        self.next_arrival(model);
        let state = &self.models[model];
        let wide = state.wide.is_some() && {
            let seen: u64 = state.instances.iter().map(|&i| self.instances[i].in_flight as u64).sum();
            let (after, wide) = state.arrivals.arrive(seen);
            self.models[model].arrivals = after;
            wide
        };
        let state = &mut self.models[model];
        let replica = if wide {
            0
        } else {
            let start = state.next;
            state.next += 1;
            let (instances, ids, cores) = (&self.instances, &state.instances, self.table.cores());
            replica::pick_free(
                start,
                ids.len(),
                |r| instances[ids[r]].in_flight,
                |r| instances[ids[r]].span.cores().all(|c| !cores[c].busy),
            )
        };
        let instance = self.models[model].instances[replica];
        let index = self.calls[model].len();
        let id = self.instances[instance].id as usize;
        let mut record = CallRecord {
            model,
            arrival,
            instance: Some(id),
            wide,
            start: None,
            cores: None,
            end: arrival,
            failure: None,
        };
        if self.instances[instance].queue.len() >= self.spec.queue_len_max.max(1) {
            record.instance = None;
            record.failure = Some(Failure::QueueFull);
            self.calls[model].push(record);
            return;
        }
        self.calls[model].push(record);
        let target = &mut self.instances[instance];
        target.in_flight += 1;
        target.queue.push_back((model, index));
        self.take_next(instance);
    }

    fn deadline(&self, call: (usize, usize)) -> f64 {
        self.calls[call.0][call.1].arrival + self.spec.exec_timeout
    }

    fn fail(&mut self, instance: usize, call: (usize, usize)) {
        let record = &mut self.calls[call.0][call.1];
        record.failure = Some(Failure::Timeout);
        record.end = self.now;
        self.instances[instance].in_flight -= 1;
    }

    /// Step 2: an idle worker takes its next call.
    fn take_next(&mut self, instance: usize) {
        while matches!(self.instances[instance].worker, Worker::Idle) {
            let Some(call) = self.instances[instance].queue.pop_front() else { return };
            if self.now >= self.deadline(call) {
                self.fail(instance, call);
                continue;
            }
            let model = self.instances[instance].model;
            let wide_span = self.models[model].wide;
            if self.calls[call.0][call.1].wide
                && let Some(span) = wide_span
                && let Some(switched) = self.table.try_take(span, self.models[model].id)
            {
                self.start(instance, call, span, switched, true);
                return;
            }
            let span = self.instances[instance].span;
            let ticket = self.table.join(span);
            if self.table.may_go(ticket) {
                let switched = self.table.go(ticket, self.models[model].id);
                self.start(instance, call, span, switched, false);
            } else {
                self.instances[instance].worker = Worker::Waiting { call, ticket };
                let deadline = self.deadline(call);
                self.push(deadline, Event::DeadlinePasses { instance, ticket });
            }
        }
    }

    /// Step 3: an execution starts on `span`, the `in_a_row`-th of its run after the first.
    fn start(&mut self, instance: usize, call: (usize, usize), span: CoreSpan, switched: bool, wide: bool) {
        self.run(instance, call, span, switched, wide, 0);
    }

    fn run(
        &mut self,
        instance: usize,
        call: (usize, usize),
        span: CoreSpan,
        switched: bool,
        wide: bool,
        in_a_row: usize,
    ) {
        let model = self.instances[instance].model;
        // Straight after its previous execution, the instance's cores are warm.
        let after_idle = self.instances[instance].last_end.is_none_or(|end| end < self.now);
        let took = {
            let state = &mut self.models[model];
            self.spec.models[model].service.draw(&mut state.rng, switched, after_idle)
        };
        let record = &mut self.calls[call.0][call.1];
        record.start = Some(self.now);
        record.cores = Some(span);
        record.wide = wide;
        self.instances[instance].worker = Worker::Running { call, span, started: self.now, in_a_row, wide };
        self.push(self.now + took, Event::ExecutionEnds { instance });
    }

    fn execution_ends(&mut self, instance: usize) {
        let Worker::Running { call, span, started, in_a_row, wide } =
            std::mem::replace(&mut self.instances[instance].worker, Worker::Idle)
        else {
            unreachable!("only a running worker has an execution to end")
        };
        let took = self.now - started;
        self.instances[instance].last_end = Some(self.now);
        for core in span.cores() {
            self.cores[core].executions += 1;
            self.cores[core].busy += took;
        }
        let counts = &mut self.models[self.instances[instance].model].counts;
        counts.executions += 1;
        counts.compute_ns += (took * 1e9) as u64;
        self.instances[instance].in_flight -= 1;
        self.calls[call.0][call.1].end = self.now;
        let in_a_row = in_a_row + 1;
        if !wide
            && runs::continues(in_a_row, self.spec.run_max)
            && let Some(next) = self.instances[instance].queue.pop_front()
        {
            if self.now < self.deadline(next) {
                // The same gang: no switch to pay.
                self.run(instance, next, span, false, false, in_a_row);
                return;
            }
            self.fail(instance, next);
        }
        if self.table.release(span) {
            self.wake_waiters();
        }
        self.take_next(instance);
    }

    fn deadline_passes(&mut self, instance: usize, ticket: Ticket) {
        let Worker::Waiting { call, ticket: waiting } = self.instances[instance].worker else { return };
        if waiting != ticket {
            return;
        }
        self.instances[instance].worker = Worker::Idle;
        let others_wait = self.table.leave(ticket);
        self.fail(instance, call);
        if others_wait {
            self.wake_waiters();
        }
        self.take_next(instance);
    }

    /// The autopilot's interval: the same estimate and decision as the runtime's controller.
    fn autopilot(&mut self) {
        let interval = self.spec.autopilot.expect("ticks only with the autopilot on");
        let busy =
            self.models.iter().any(|m| m.cursor < m.times.len()) || self.instances.iter().any(|i| i.in_flight > 0);
        if busy {
            self.push(self.now + interval, Event::Autopilot);
        }
        let cores = self.spec.cores;
        let instances = &self.instances;
        let demands: Vec<Demand> = self
            .models
            .iter_mut()
            .map(|state| {
                state.estimate.observe(Reading {
                    counts: state.counts,
                    seconds: interval,
                    in_flight: state.instances.iter().map(|&i| instances[i].in_flight).sum(),
                    instances: state.instances.len(),
                })
            })
            .collect();
        let views = self.views(&demands);
        for step in autopilot::decide(&views, cores, &vec![true; cores]) {
            match step {
                Move::Grow { model, span } => {
                    self.grow(model, span);
                    self.models[model].moves.0 += 1;
                    self.move_times.push((self.now, model, "grow"));
                }
                Move::Shrink { model, id } => {
                    if self.retire(model, id) {
                        self.models[model].moves.1 += 1;
                        self.move_times.push((self.now, model, "shrink"));
                    }
                }
                Move::Relocate { model, id, span } => {
                    self.grow(model, span);
                    self.retire(model, id);
                    self.models[model].moves.2 += 1;
                    self.move_times.push((self.now, model, "move"));
                }
            }
        }
    }

    /// Each model as the autopilot sees it with its `demands`: what `decide` is handed, made by
    /// `corral_dispatch::autopilot::view` as the runtime's controller makes its own.
    fn views(&self, demands: &[Demand]) -> Vec<ModelView> {
        self.models
            .iter()
            .zip(demands)
            .enumerate()
            .map(|(m, (state, &demand))| {
                let instances = state
                    .instances
                    .iter()
                    .map(|&i| InstanceView { id: self.instances[i].id, span: self.instances[i].span, held: false })
                    .collect();
                autopilot::view(state.bounds, self.spec.models[m].cores_per_instance, instances, Some(demand))
            })
            .collect()
    }

    fn grow(&mut self, model: usize, span: CoreSpan) {
        let state = &mut self.models[model];
        let id = state.next_id;
        state.next_id += 1;
        self.instances.push(Instance {
            model,
            id,
            span,
            queue: VecDeque::new(),
            in_flight: 0,
            worker: Worker::Idle,
            last_end: None,
        });
        state.instances.push(self.instances.len() - 1);
        self.rebuild_wide(model);
    }

    /// No new call reaches the instance; it finishes what it accepted (its worker and queue
    /// stay until then).
    fn retire(&mut self, model: usize, id: u64) -> bool {
        let instances = &self.instances;
        let state = &mut self.models[model];
        let Some(position) = state.instances.iter().position(|&i| instances[i].id == id) else { return false };
        if state.instances.len() == 1 {
            return false;
        }
        state.instances.remove(position);
        self.rebuild_wide(model);
        true
    }

    fn rebuild_wide(&mut self, model: usize) {
        if self.spec.models[model].elastic {
            let spans: Vec<CoreSpan> = self.models[model].instances.iter().map(|&i| self.instances[i].span).collect();
            self.models[model].wide = elastic::wide_span(self.spec.models[model].cores_per_instance, &spans);
        }
    }

    /// The waiters that may go now, in line order (a gang going only takes cores, so one
    /// pass finds them all).
    fn wake_waiters(&mut self) {
        let tickets: Vec<Ticket> = self.table.tickets().collect();
        for ticket in tickets {
            if !self.table.may_go(ticket) {
                continue;
            }
            let Some(instance) = self
                .instances
                .iter()
                .position(|i| matches!(i.worker, Worker::Waiting { ticket: t, .. } if t == ticket))
            else {
                continue;
            };
            let Worker::Waiting { call, .. } = self.instances[instance].worker else { continue };
            let model = self.instances[instance].model;
            let switched = self.table.go(ticket, self.models[model].id);
            let span = self.instances[instance].span;
            self.start(instance, call, span, switched, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_model(name: &str, k: usize, instances: &[usize], latency: f64, switch: f64) -> ModelSpec {
        ModelSpec {
            name: name.to_owned(),
            cores_per_instance: k,
            instances: instances.iter().map(|&s| CoreSpan::new(s, k)).collect(),
            elastic: false,
            service: Service::Fixed { latency, switch },
            bounds: None,
            grouped: false,
        }
    }

    fn spec(cores: usize, models: Vec<ModelSpec>) -> Spec {
        Spec { cores, exec_timeout: 30.0, queue_len_max: 1024, run_max: 8, models, autopilot: None }
    }

    #[test]
    fn one_caller_uses_replicas_in_order_and_queues_wait() {
        let run = simulate(&spec(2, vec![sim_model("m", 1, &[0, 1], 0.010, 0.0)]), &[vec![0.0, 0.020, 0.040]], 0);
        let used: Vec<Option<usize>> = run.calls[0].iter().map(|c| c.instance).collect();
        assert_eq!(used, [Some(0), Some(1), Some(0)]);
        let burst = simulate(&spec(1, vec![sim_model("m", 1, &[0], 0.010, 0.0)]), &[vec![0.0, 0.0, 0.0]], 0);
        let ends: Vec<f64> = burst.calls[0].iter().map(|c| (c.end * 1e3).round()).collect();
        assert_eq!(ends, [10.0, 20.0, 30.0], "one core runs one call at a time");
    }

    #[test]
    fn shared_cores_switch_once_per_run_and_charge_the_switch() {
        // B and C share nc1 (the seeds' bad FlexEG layout in small): alternating arrivals.
        let models = vec![sim_model("b", 2, &[0], 0.010, 0.005), sim_model("c", 2, &[1], 0.010, 0.005)];
        let run = simulate(&spec(3, models.clone()), &[vec![0.0, 0.1], vec![0.05, 0.15]], 0);
        assert_eq!(run.cores.iter().map(|c| c.switches).collect::<Vec<_>>(), [0, 3, 0]);
        let took: Vec<f64> = run.calls[1].iter().map(|c| ((c.end - c.arrival) * 1e3).round()).collect();
        assert_eq!(took, [15.0, 15.0], "every C call follows a B call on nc1");
        // A burst of B then C: each runs its queue in one run, one switch in all.
        let run = simulate(&spec(3, models), &[vec![0.0; 3], vec![0.001; 3]], 0);
        assert_eq!(run.cores[1].switches, 1);
    }

    #[test]
    fn a_call_that_cannot_start_in_time_fails_and_a_full_queue_refuses() {
        let mut tight = spec(1, vec![sim_model("m", 1, &[0], 1.0, 0.0)]);
        tight.exec_timeout = 1.5;
        let run = simulate(&tight, &[vec![0.0, 0.0, 0.0]], 0);
        let failures: Vec<Option<Failure>> = run.calls[0].iter().map(|c| c.failure).collect();
        assert_eq!(failures, [None, None, Some(Failure::Timeout)]);
        tight.queue_len_max = 1;
        let run = simulate(&tight, &[vec![0.0, 0.0, 0.0]], 0);
        let failures: Vec<Option<Failure>> = run.calls[0].iter().map(|c| c.failure).collect();
        assert_eq!(failures, [None, None, Some(Failure::QueueFull)], "the worker holds one, the queue one");
    }

    #[test]
    fn a_measured_model_runs_slower_after_idle_than_straight_after_a_call() {
        let mut model = sim_model("m", 1, &[0], 0.0, 0.0);
        model.service = Service::Measured { samples: vec![0.010], after_idle: vec![0.030], switch: 0.0 };
        // Two at once (the second waits, then runs warm); a third after a pause.
        let run = simulate(&spec(1, vec![model]), &[vec![0.0, 0.0, 1.0]], 0);
        let took: Vec<f64> = run.calls[0].iter().map(|c| ((c.end - c.start.expect("ran")) * 1e3).round()).collect();
        assert_eq!(took, [30.0, 10.0, 30.0]);
    }

    #[test]
    fn a_lone_elastic_call_takes_every_idle_core() {
        let mut model = sim_model("e", 1, &[0, 1, 2], 0.010, 0.0);
        model.elastic = true;
        let run = simulate(&spec(3, vec![model]), &[vec![0.0, 1.0]], 0);
        assert!(run.calls[0].iter().all(|c| c.wide), "{:?}", run.calls[0]);
        assert_eq!(run.cores.iter().map(|c| c.executions).collect::<Vec<_>>(), [2, 2, 2]);
    }
}
