//! Open-loop load (`corral bench --rate`): calls sent at scheduled times, independent of
//! answers, so queueing shows in the latencies instead of slowing the load down. One thread
//! sends every model's calls in time order with [`Model::try_submit`] (a full queue refuses
//! a call at once, counted as a failure); the answers are collected after the last call is
//! sent. Each call's latency runs from its *scheduled* arrival to the end of its execution
//! (the engine's own start and run time), so a lagging sender cannot hide queueing, and the
//! numbers mean what `corral plan --predict`'s simulator means by them.
//!
//! It lives in the runtime, not beside `corral bench`, because it is the runtime's driver of
//! an arrival schedule, the real-time twin of `corral_plan::simulate`: `corral bench --rate`
//! and the CLI's benchmarks replay through it. (The runtime's own test that both drivers take
//! the same decisions, `tests/it/replay.rs`, walks the simulator's events step by step
//! instead, so that no clock can decide.) The runtime is the one crate all of them reach that
//! knows a `Model` (the CLI is a binary, and the planner sits below the runtime and knows no
//! model), and the module uses only `Model`'s public calls.

use std::time::{Duration, Instant};

use corral_engine::Tensor;

use crate::{error::InferError, model::Model};

/// What became of one call; times in seconds from the run's start.
#[derive(Clone, Debug)]
pub struct Sent {
    /// When it was scheduled.
    pub arrival: f64,
    /// Its replica, when it was queued and ran.
    pub instance: Option<usize>,
    /// When its execution started and ended (the answer's time), for a call that ran.
    pub start: Option<f64>,
    pub end: f64,
    pub error: Option<InferError>,
}

/// A call sent: its model, its index among the model's arrivals, its arrival, what
/// submitting it gave, and when it was submitted.
type Pending = (usize, usize, f64, Result<crate::Reply, InferError>, f64);

/// Sends `inputs[m]` to `models[m]` at each of `arrivals[m]` (seconds from now, ascending),
/// then waits for every answer; per model, one [`Sent`] per arrival in order.
pub fn replay(models: &[Model], inputs: &[Vec<Tensor>], arrivals: &[Vec<f64>]) -> Vec<Vec<Sent>> {
    let mut order: Vec<(f64, usize, usize)> = arrivals
        .iter()
        .enumerate()
        .flat_map(|(m, times)| times.iter().enumerate().map(move |(i, &t)| (t, m, i)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let start = Instant::now();
    let since = |at: Instant| at.saturating_duration_since(start).as_secs_f64();
    let mut pending: Vec<Pending> = Vec::with_capacity(order.len());
    for (t, m, i) in order {
        let due = start + Duration::from_secs_f64(t);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let submitted = models[m].try_submit(inputs[m].clone());
        pending.push((m, i, t, submitted, since(Instant::now())));
    }
    let mut sent: Vec<Vec<Option<Sent>>> = arrivals.iter().map(|times| vec![None; times.len()]).collect();
    for (m, i, arrival, submitted, submitted_at) in pending {
        let outcome = match submitted.map(crate::Reply::wait) {
            Ok(Ok(inference)) => Sent {
                arrival,
                instance: Some(inference.instance),
                start: Some(since(inference.started)),
                end: since(inference.started + inference.compute),
                error: None,
            },
            Ok(Err(error)) => {
                Sent { arrival, instance: None, start: None, end: since(Instant::now()), error: Some(error) }
            }
            Err(error) => Sent { arrival, instance: None, start: None, end: submitted_at, error: Some(error) },
        };
        sent[m][i] = Some(outcome);
    }
    sent.into_iter().map(|calls| calls.into_iter().map(|c| c.expect("every call was sent")).collect()).collect()
}
