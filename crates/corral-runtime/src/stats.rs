//! Per-model statistics, updated lock-free from workers and callers: request and failure
//! counts (with calls refused for bad inputs counted apart, for monitor's
//! `incorrect_input`), total queue and compute time, and a latency histogram for percentiles.
//!
//! The histogram has logarithmic buckets, [`corral_cores::LATENCY_BUCKETS_PER_OCTAVE`] per doubling from 1 µs
//! (about 9% wide each), so a percentile is exact to within one bucket and recording costs one
//! atomic add.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// 1 µs · 2^40 ≈ 12 days: anything longer lands in the last bucket.
const OCTAVES: usize = 40;
const BUCKETS: usize = corral_cores::LATENCY_BUCKETS_PER_OCTAVE as usize * OCTAVES;

/// A point-in-time copy of a model's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStats {
    /// Calls accepted (validated and dispatched).
    pub requests: u64,
    /// Calls that failed: bad inputs, timeouts, engine errors.
    pub failures: u64,
    /// The part of `failures` refused before queueing because their inputs did not match the
    /// model's (`InferError::Input`).
    pub input_failures: u64,
    /// Executions run by the engine.
    pub executions: u64,
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// The instances taking calls now, in replica order, read together.
    pub instances: Vec<InstanceStats>,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
}

/// One instance of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStats {
    /// Stable while the model is loaded (a label that survives the autopilot's moves).
    pub id: u64,
    /// Its process cores.
    pub cores: corral_placement::CoreSpan,
    pub executions: u64,
    /// Calls queued or executing on it.
    pub in_flight: usize,
}

#[derive(Debug)]
pub(crate) struct Recorder {
    requests: AtomicU64,
    /// Failures other than bad inputs; kept apart from `input_failures` so that one snapshot's
    /// `failures` is their sum, never a count that has one and not yet the other.
    other_failures: AtomicU64,
    input_failures: AtomicU64,
    executions: AtomicU64,
    queue_ns: AtomicU64,
    compute_ns: AtomicU64,
    latency: Vec<AtomicU64>,
    /// Engine time per execution, the same buckets (monitor's `device_latency`).
    compute: Vec<AtomicU64>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            requests: AtomicU64::new(0),
            other_failures: AtomicU64::new(0),
            input_failures: AtomicU64::new(0),
            executions: AtomicU64::new(0),
            queue_ns: AtomicU64::new(0),
            compute_ns: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            compute: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// Counts a failed call (for one refused for its inputs, [`Recorder::input_failure`]).
    pub(crate) fn failure(&self) {
        self.other_failures.fetch_add(1, Relaxed);
    }

    /// Counts a call refused because its inputs did not match the model's.
    pub(crate) fn input_failure(&self) {
        self.input_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn execution(&self, queue: Duration, compute: Duration) {
        self.executions.fetch_add(1, Relaxed);
        self.queue_ns.fetch_add(queue.as_nanos() as u64, Relaxed);
        self.compute_ns.fetch_add(compute.as_nanos() as u64, Relaxed);
        self.compute[bucket(compute)].fetch_add(1, Relaxed);
    }

    /// Records the whole latency of a successful call.
    pub(crate) fn latency(&self, latency: Duration) {
        self.latency[bucket(latency)].fetch_add(1, Relaxed);
    }

    /// The latency histogram as `[bucket, count]` pairs for non-empty buckets (the live
    /// publication's form; bucket limits are [`corral_cores::latency_bucket_limit`]).
    pub(crate) fn latency_buckets(&self) -> Vec<(u32, u64)> {
        sparse(&self.latency)
    }

    /// The engine-time histogram, as [`Recorder::latency_buckets`].
    pub(crate) fn compute_buckets(&self) -> Vec<(u32, u64)> {
        sparse(&self.compute)
    }

    pub(crate) fn snapshot(&self) -> ModelStats {
        let (other_failures, input_failures) = (self.other_failures.load(Relaxed), self.input_failures.load(Relaxed));
        ModelStats {
            requests: self.requests.load(Relaxed),
            failures: other_failures + input_failures,
            input_failures,
            executions: self.executions.load(Relaxed),
            queue_time: Duration::from_nanos(self.queue_ns.load(Relaxed)),
            compute_time: Duration::from_nanos(self.compute_ns.load(Relaxed)),
            // Filled in by `Model::stats` from its current instances.
            instances: Vec::new(),
            p50: percentile(&self.latency, 0.50),
            p90: percentile(&self.latency, 0.90),
            p99: percentile(&self.latency, 0.99),
        }
    }
}

fn sparse(histogram: &[AtomicU64]) -> Vec<(u32, u64)> {
    let counts = histogram.iter().map(|b| b.load(Relaxed));
    counts.enumerate().filter(|&(_, count)| count > 0).map(|(index, count)| (index as u32, count)).collect()
}

fn bucket(latency: Duration) -> usize {
    corral_cores::latency_bucket(latency.as_secs_f64(), BUCKETS as u32 - 1) as usize
}

/// The smallest bucket limit below which a `fraction` of the samples fall.
fn percentile(histogram: &[AtomicU64], fraction: f64) -> Duration {
    corral_cores::bucket_percentile(&sparse(histogram), fraction)
        .map_or(Duration::ZERO, |b| Duration::from_secs_f64(corral_cores::latency_bucket_limit(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_bucket() {
        let recorder = Recorder::new();
        for ms in 1..=100 {
            recorder.latency(Duration::from_millis(ms));
        }
        let stats = recorder.snapshot();
        let within = |got: Duration, want_ms: f64| {
            let ratio = got.as_secs_f64() * 1e3 / want_ms;
            assert!((1.0..1.1).contains(&ratio), "{got:?} vs {want_ms} ms");
        };
        within(stats.p50, 50.0);
        within(stats.p90, 90.0);
        within(stats.p99, 99.0);
        assert_eq!(Recorder::new().snapshot().p50, Duration::ZERO);
    }

    #[test]
    fn input_failures_are_a_part_of_failures() {
        let recorder = Recorder::new();
        recorder.failure();
        recorder.input_failure();
        recorder.input_failure();
        let stats = recorder.snapshot();
        assert_eq!((stats.failures, stats.input_failures), (3, 2));
    }
}
