//! One rule, one implementation: the same arrivals replayed through the threaded runtime on a
//! simulated device (real threads, real sleeps) and through the planner's virtual-time
//! simulator take the same decisions: the same replica for every call, the same calls served
//! and failed, the same switches and executions on every core. Decisions, not times, are
//! compared; the arrival schedule is built so that no arrival falls within 20 ms of another
//! event, far more than a busy 2-CPU machine's scheduling noise, so each decision sees the
//! same state in both.

use corral_plan::simulate::{ModelSpec, Service, Spec, simulate};
use corral_runtime::{CoreSpan, ModelDef, Where, open_loop};

use super::{input, runtime, sim};

/// (name, K, instance starts, latency ms, switch ms, elastic, calls per second)
type Row = (&'static str, usize, &'static [usize], u64, u64, bool, f64);
const MODELS: [Row; 3] =
    [("a", 1, &[0, 1], 130, 0, false, 9.0), ("b", 2, &[1], 110, 40, false, 4.0), ("c", 1, &[3, 4], 90, 0, true, 5.0)];
const DURATION_S: f64 = 3.0;
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
    let mut rng = corral_plan::arrivals::Rng::new(11, 0);
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

#[test]
fn the_threaded_runtime_and_the_simulator_take_the_same_decisions() {
    let spec = spec();
    let arrivals = clear_schedule(&spec);
    let predicted = simulate(&spec, &arrivals, 0);
    let calls: usize = arrivals.iter().map(Vec::len).sum();
    assert!(calls >= 20, "enough calls to say something: {calls}");
    assert!(predicted.cores.iter().any(|c| c.switches > 0), "the schedule makes a and b switch on nc1");
    assert!(predicted.calls[2].iter().any(|c| c.wide), "and c go wide at least once");
    assert!(predicted.calls.iter().flatten().any(|c| c.start.is_some_and(|s| s > c.arrival)), "and calls queue");

    let (_dir, runtime) = runtime("sim:5", None, None);
    let models: Vec<_> = MODELS
        .iter()
        .map(|&(name, k, starts, latency, switch, elastic, _)| {
            let def =
                ModelDef::sim(name, sim(latency, switch)).cores(k).elastic(elastic).at(Where::Starts(starts.to_vec()));
            runtime.load(def).expect("loads")
        })
        .collect();
    let inputs: Vec<_> = models.iter().map(|_| input()).collect();
    let measured = open_loop::replay(&models, &inputs, &arrivals);

    for (m, (sent, simulated)) in measured.iter().zip(&predicted.calls).enumerate() {
        let ran: Vec<Option<usize>> = sent.iter().map(|c| c.instance).collect();
        let chose: Vec<Option<usize>> = simulated.iter().map(|c| if c.wide { Some(0) } else { c.instance }).collect();
        assert_eq!(ran, chose, "model {}: the replica of every call", MODELS[m].0);
        let failed = sent.iter().filter(|c| c.error.is_some()).count();
        let failed_sim = simulated.iter().filter(|c| c.failure.is_some()).count();
        assert_eq!((sent.len(), failed), (simulated.len(), failed_sim), "model {}: served and failed", MODELS[m].0);
    }
    let switches: Vec<u64> = runtime.core_stats().iter().map(|c| c.switches).collect();
    let predicted_switches: Vec<u64> = predicted.cores.iter().map(|c| c.switches).collect();
    assert_eq!(switches, predicted_switches, "switches per core");
    let executions: Vec<u64> = runtime.core_stats().iter().map(|c| c.executions).collect();
    let predicted_executions: Vec<u64> = predicted.cores.iter().map(|c| c.executions).collect();
    assert_eq!(executions, predicted_executions, "executions per core (wide runs included)");
}
