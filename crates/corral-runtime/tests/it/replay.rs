//! One rule, one implementation: the same arrivals driven through the threaded runtime on a
//! simulated device and through the planner's virtual-time simulator take the same decisions:
//! the same replica for every call (a turn skipped for an idle replica on free cores
//! included), the same calls served and failed, the same switches and executions on every
//! core. Decisions, not times, are compared, and nothing waits on a clock: the runtime runs a
//! [`Held`] engine, whose executions end only when the test releases them, and the test walks
//! the simulator's events in order (an arrival submits its call, an end releases it), waiting
//! after each until the runtime stands where the simulator does: the same calls started, the
//! same cores held. A loaded machine makes the walk slower, never different.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use corral_engine::{
    DataType, Engine, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor, TensorData,
    TensorSpec,
};
use corral_plan::simulate::{CallRecord, ModelSpec, Service, Spec, simulate};
use corral_runtime::{CoreSpan, Model, ModelDef, RuntimeSettings, Where, sync};

use super::runtime_with;

/// (name, K, instance starts, latency ms, switch ms, elastic, calls per second)
type Row = (&'static str, usize, &'static [usize], u64, u64, bool, f64);
const MODELS: [Row; 3] =
    [("a", 1, &[0, 1], 130, 0, false, 9.0), ("b", 2, &[1], 110, 40, false, 4.0), ("c", 1, &[3, 4], 90, 0, true, 5.0)];
const DURATION_S: f64 = 3.0;
/// Virtual seconds that keep each arrival off every other event's instant, so that no two
/// events tie (the drivers could break a tie differently). Not a margin for scheduling noise:
/// nothing here waits on a clock.
const MARGIN_S: f64 = 0.020;

fn spec() -> Spec {
    let models = MODELS
        .iter()
        .map(|&(name, k, starts, latency, switch, elastic, _)| ModelSpec {
            name: name.to_owned(),
            cores_per_instance: k,
            instances: starts.iter().map(|&s| CoreSpan::new(s, k)).collect(),
            elastic,
            service: Service::Fixed { latency: latency as f64 / 1e3, switch: switch as f64 / 1e3 },
            bounds: None,
            grouped: false,
        })
        .collect();
    Spec { cores: 5, exec_timeout: 30.0, queue_len_max: 1024, run_max: 8, models, autopilot: None }
}

/// Whether every arrival of `arrivals` stands `MARGIN_S` clear of every other event of the
/// simulated run (arrivals, starts, ends).
fn clear(spec: &Spec, arrivals: &[Vec<f64>]) -> bool {
    let run = simulate(spec, arrivals, 0);
    // A call that starts on arrival starts in the same decision: its start is not another event.
    let mut events: Vec<f64> =
        run.calls.iter().flatten().flat_map(|c| [c.start.filter(|&s| s != c.arrival), Some(c.end)]).flatten().collect();
    events.extend(arrivals.iter().flatten());
    arrivals.iter().flatten().all(|&a| events.iter().filter(|&&e| (e - a).abs() < MARGIN_S).count() == 1)
}

/// Poisson arrivals at each model's rate, built one call at a time: a candidate whose
/// arrival would fall within `MARGIN_S` of another event (simulated) is drawn again.
fn clear_schedule(spec: &Spec) -> Vec<Vec<f64>> {
    let mut rng = corral_plan::arrivals::Rng::new(1, 0);
    let mut arrivals: Vec<Vec<f64>> = vec![Vec::new(); MODELS.len()];
    let mut next: Vec<f64> = MODELS.iter().map(|m| corral_plan::arrivals::gap(&mut rng, m.6, 1.0)).collect();
    loop {
        let (m, &at) = next.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).expect("models");
        if at >= DURATION_S {
            return arrivals;
        }
        arrivals[m].push(at);
        if !clear(spec, &arrivals) {
            arrivals[m].pop();
        }
        next[m] = at + corral_plan::arrivals::gap(&mut rng, MODELS[m].6, 1.0);
    }
}

/// An engine whose executions wait for the test: each says it started, with the number of its
/// call (the first element of its input, see [`Held::input`]), and ends when the test
/// releases that number, or every call once the guard of [`Held::release_all_on_drop`] drops
/// (so a failing test ends), or fails after a minute.
#[derive(Clone, Default)]
pub(super) struct Held(Arc<HeldCalls>);

#[derive(Default)]
struct HeldCalls {
    state: Mutex<HeldState>,
    changed: Condvar,
}

#[derive(Default)]
struct HeldState {
    /// Call numbers, in the order their executions started.
    started: Vec<usize>,
    released: HashSet<usize>,
    all_released: bool,
}

/// Releases every call of its engine when dropped.
pub(super) struct ReleaseAll(Held);

impl Drop for ReleaseAll {
    fn drop(&mut self) {
        sync::lock(&self.0.0.state).all_released = true;
        self.0.0.changed.notify_all();
    }
}

/// How long a wait on the runtime may take before the test gives up: far beyond any load.
const PATIENCE: Duration = Duration::from_secs(60);

impl Held {
    /// `settings` with this engine for ONNX models.
    pub(super) fn settings(&self, settings: RuntimeSettings) -> RuntimeSettings {
        RuntimeSettings { onnx_engine: Some(Arc::new(self.clone())), ..settings }
    }

    /// The input of call number `call`.
    pub(super) fn input(call: usize) -> Vec<Tensor> {
        vec![Tensor::new("x", vec![1, 4], TensorData::F32(vec![call as f32, 0.0, 0.0, 0.0]))]
    }

    /// The calls started so far, in order.
    pub(super) fn started(&self) -> Vec<usize> {
        sync::lock(&self.0.state).started.clone()
    }

    /// Waits until the calls started are `expected` (as a set), failing at once on a call
    /// outside it; `at` says when, for the messages.
    #[track_caller]
    pub(super) fn wait_started(&self, expected: &BTreeSet<usize>, at: &str) {
        let deadline = Instant::now() + PATIENCE;
        let mut state = sync::lock(&self.0.state);
        loop {
            let started: BTreeSet<usize> = state.started.iter().copied().collect();
            let early: Vec<_> = started.difference(expected).collect();
            assert!(early.is_empty(), "{at}: the runtime started calls {early:?}, which the simulator has not");
            if started == *expected {
                return;
            }
            let now = Instant::now();
            let missing: Vec<_> = expected.difference(&started).collect();
            assert!(now < deadline, "{at}: the simulator started calls {missing:?}, which the runtime has not");
            state = self.0.changed.wait_timeout(state, deadline - now).expect("held lock").0;
        }
    }

    /// A guard that releases every call when dropped: declared after the runtime, it drops
    /// first, so a test that fails does not wait on workers held in their executions.
    pub(super) fn release_all_on_drop(&self) -> ReleaseAll {
        ReleaseAll(self.clone())
    }

    /// Lets call number `call` end.
    pub(super) fn release(&self, call: usize) {
        sync::lock(&self.0.state).released.insert(call);
        self.0.changed.notify_all();
    }
}

impl Engine for Held {
    fn name(&self) -> &'static str {
        "held"
    }

    fn prepare(&self, _source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let inputs = vec![TensorSpec::new("x", DataType::F32, vec![1, 4])];
        Ok(Arc::new(Prepared::new(inputs, Vec::new(), self.clone())))
    }
}

impl Sessions for Held {
    fn session(&self, _placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        Ok(Box::new(self.clone()))
    }
}

impl Session for Held {
    fn run(&mut self, inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
        let TensorData::F32(values) = &inputs[0].data else { unreachable!("x is FP32") };
        let call = values[0] as usize;
        let mut state = sync::lock(&self.0.state);
        state.started.push(call);
        self.0.changed.notify_all();
        let (state, waited) = self
            .0
            .changed
            .wait_timeout_while(state, PATIENCE, |state| !state.all_released && !state.released.contains(&call))
            .expect("held lock");
        drop(state);
        if waited.timed_out() {
            return Err(EngineError::Run(format!("call {call} was never released")));
        }
        Ok(Vec::new())
    }
}

/// One step of the simulator's run: a call arrives, or its execution ends.
#[derive(Clone, Copy, Debug)]
enum Step {
    Arrives(usize),
    Ends(usize),
}

#[test]
fn the_threaded_runtime_and_the_simulator_take_the_same_decisions() {
    let spec = spec();
    let arrivals = clear_schedule(&spec);
    let predicted = simulate(&spec, &arrivals, 0);
    // Calls numbered model by model, each model's in arrival order.
    let calls: Vec<_> = predicted.calls.iter().flatten().collect();
    assert!(calls.len() >= 20, "enough calls to say something: {}", calls.len());
    assert!(predicted.cores.iter().any(|c| c.switches > 0), "the schedule makes a and b switch on nc1");
    assert!(predicted.calls[2].iter().any(|c| c.wide), "and c go wide at least once");
    assert!(calls.iter().any(|c| c.start.is_some_and(|s| s > c.arrival)), "and calls queue");
    assert!(calls.iter().all(|c| c.failure.is_none()), "and every call runs (a timeout would need a clock)");
    // A call of `a` whose turn is its replica on nc1 (odd calls: the turns alternate) while
    // `b` executes there and no call of `a` is in flight: it takes the idle replica on free
    // cores, nc0 (`replica::pick_free`), in both drivers.
    let executing = |c: &CallRecord, at: f64| c.start.is_some_and(|s| s <= at) && c.end > at;
    let off_turn = predicted.calls[0].iter().enumerate().filter(|(i, call)| {
        i % 2 == 1
            && predicted.calls[1].iter().any(|b| executing(b, call.arrival))
            && !predicted.calls[0].iter().any(|a| a.arrival < call.arrival && a.end > call.arrival)
    });
    assert!(off_turn.count() > 0, "and a call of a goes to nc0 on nc1's turn, b executing there");
    let mut steps: Vec<(f64, Step)> =
        calls.iter().enumerate().flat_map(|(n, c)| [(c.arrival, Step::Arrives(n)), (c.end, Step::Ends(n))]).collect();
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(steps.windows(2).all(|w| w[0].0 < w[1].0), "no two steps at one instant, so their order is plain");

    let held = Held::default();
    // The simulator's 30 s limit is virtual and no call nears it; the runtime's is real time,
    // which a starved walk may spend: it is set out of reach.
    let settings = RuntimeSettings { exec_timeout: Some(Duration::from_secs(3600)), ..RuntimeSettings::default() };
    let (_dir, runtime) = runtime_with("sim:5", None, None, held.settings(settings));
    let _release = held.release_all_on_drop();
    let models: Vec<Model> = MODELS
        .iter()
        .map(|&(name, k, starts, _, _, elastic, _)| {
            let def = ModelDef::onnx(name, "/held.onnx").cores(k).elastic(elastic).at(Where::Starts(starts.to_vec()));
            runtime.load(def).expect("loads")
        })
        .collect();

    let mut replies: Vec<_> = calls.iter().map(|_| None).collect();
    let mut ran = vec![None; calls.len()];
    for &(now, step) in &steps {
        match step {
            Step::Arrives(n) => replies[n] = Some(models[calls[n].model].submit(Held::input(n)).expect("queued")),
            Step::Ends(n) => {
                held.release(n);
                let reply = replies[n].take().expect("a call arrives before it ends");
                ran[n] = Some(reply.wait().expect("answered").instance);
            }
        }
        // Where the simulator stands after this step: the calls started, the cores held.
        let at = format!("at {now:.3} s, after {step:?}");
        let started = (0..calls.len()).filter(|&n| calls[n].start.is_some_and(|s| s <= now)).collect();
        held.wait_started(&started, &at);
        let mut cores = vec![false; spec.cores];
        for call in calls.iter().filter(|c| c.start.is_some_and(|s| s <= now) && c.end > now) {
            call.cores.expect("a started call has cores").cores().for_each(|core| cores[core] = true);
        }
        let deadline = Instant::now() + PATIENCE;
        while runtime.cores_held() != cores {
            assert!(Instant::now() < deadline, "{at}: cores held {:?}, not {cores:?}", runtime.cores_held());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let mut first = 0;
    for (m, simulated) in predicted.calls.iter().enumerate() {
        let chose: Vec<Option<usize>> = simulated.iter().map(|c| if c.wide { Some(0) } else { c.instance }).collect();
        assert_eq!(ran[first..first + simulated.len()], chose, "model {}: the replica of every call", MODELS[m].0);
        first += simulated.len();
    }
    let switches: Vec<u64> = runtime.core_stats().iter().map(|c| c.switches).collect();
    let predicted_switches: Vec<u64> = predicted.cores.iter().map(|c| c.switches).collect();
    assert_eq!(switches, predicted_switches, "switches per core");
    let executions: Vec<u64> = runtime.core_stats().iter().map(|c| c.executions).collect();
    let predicted_executions: Vec<u64> = predicted.cores.iter().map(|c| c.executions).collect();
    assert_eq!(executions, predicted_executions, "executions per core (wide runs included)");
    assert_eq!(held.started().len(), calls.len(), "every call ran once");
}
