//! One shape for a run, measured (`corral bench --json`) or predicted
//! (`corral plan --predict --json`): per model the calls offered and served, throughput,
//! latency percentiles, queueing, execution time and failures; per core executions, busy share and switches.
//! Both drivers summarise their calls here, so the two numbers mean the same thing.
//!
//! Definitions: a call's latency runs from its (scheduled) arrival to its answer, its queue
//! time from its arrival to its execution's start; throughput is the successful calls
//! answered within the window, over the window; percentiles are nearest-rank over the
//! successful calls that arrived in the window.

use serde::Serialize;

/// Per model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Calls offered per second (arrivals over the window; for closed-loop callers, calls
    /// issued over the run).
    pub offered_per_s: f64,
    pub queue_ms: QueueMs,
    /// Mean time from an execution's start to its answer, over the calls that started.
    pub compute_ms: f64,
}

/// Time from arrival to the execution's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct QueueMs {
    pub mean: f64,
    pub p99: f64,
}

/// Per core.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoreRow {
    pub index: usize,
    pub global: usize,
    pub executions: u64,
    pub busy_fraction: f64,
    pub switches: u64,
    pub models: Vec<String>,
}

/// One call as a driver saw it: seconds from the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    pub arrival: f64,
    /// When its execution started, if it did.
    pub start: Option<f64>,
    pub end: f64,
    pub ok: bool,
}

/// Nearest-rank percentile `q` of sorted `values` (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

/// The row of model `name` from its calls over a window of `window` seconds.
pub fn model_row(name: &str, calls: &[Call], window: f64) -> ModelRow {
    let window = window.max(1e-9);
    let arrived: Vec<&Call> = calls.iter().filter(|c| c.arrival < window).collect();
    let mut latencies: Vec<f64> = arrived.iter().filter(|c| c.ok).map(|c| (c.end - c.arrival) * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let mut queued: Vec<f64> = arrived.iter().filter_map(|c| c.start.map(|s| (s - c.arrival) * 1e3)).collect();
    queued.sort_by(f64::total_cmp);
    let computed: Vec<f64> = arrived.iter().filter_map(|c| c.start.map(|s| (c.end - s) * 1e3)).collect();
    let served = calls.iter().filter(|c| c.ok && c.end <= window).count();
    let failures = arrived.iter().filter(|c| !c.ok).count() as u64;
    ModelRow {
        name: name.to_owned(),
        requests: arrived.len() as u64,
        failures,
        throughput_per_s: served as f64 / window,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        offered_per_s: arrived.len() as f64 / window,
        queue_ms: QueueMs {
            mean: if queued.is_empty() { 0.0 } else { queued.iter().sum::<f64>() / queued.len() as f64 },
            p99: percentile(&queued, 0.99),
        },
        compute_ms: if computed.is_empty() { 0.0 } else { computed.iter().sum::<f64>() / computed.len() as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_the_window_and_take_nearest_rank_percentiles() {
        let call = |arrival: f64, end: f64, ok| Call { arrival, start: Some(arrival), end, ok };
        let calls = [call(0.0, 0.010, true), call(0.5, 0.530, true), call(0.9, 1.2, true), call(0.95, 0.96, false)];
        let row = model_row("m", &calls, 1.0);
        assert_eq!((row.requests, row.failures), (4, 1));
        assert_eq!(row.throughput_per_s, 2.0, "the call answered after the window is not counted");
        assert_eq!((row.p50_ms.round(), row.p99_ms.round()), (30.0, 300.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
    }
}
