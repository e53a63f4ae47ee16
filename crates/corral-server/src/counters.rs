//! Triton's per-model counters, kept per model name for the server's life (across unloads and
//! reloads), so that metrics always add up to what clients saw.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A duration counter: how many, and their total.
#[derive(Debug, Default)]
pub struct Tally {
    pub count: AtomicU64,
    pub ns: AtomicU64,
}

impl Tally {
    pub(crate) fn add(&self, d: std::time::Duration) {
        self.count.fetch_add(1, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
}

/// Upper bounds (seconds) of the request-duration histogram's buckets; `+Inf` follows.
pub const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A Prometheus histogram of durations: a count per bucket (not cumulative; the last one is
/// `+Inf`), their sum, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: std::time::Duration) {
        let seconds = d.as_secs_f64();
        let bucket = DURATION_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Cumulative counts per bucket (`le` ascending, `+Inf` last) and the sum in seconds.
    pub fn cumulative(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let counts = self.buckets.iter().map(|b| {
            total += b.load(Relaxed);
            total
        });
        (counts.collect(), self.sum_ns.load(Relaxed) as f64 / 1e9)
    }
}

/// Triton's per-model statistics, kept per model name.
#[derive(Debug, Default)]
pub struct Counters {
    pub success: Tally,
    pub fail: Tally,
    pub queue: Tally,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
    /// Inferences, counting each batch row (Triton's inference_count).
    pub inferences: AtomicU64,
    /// Engine executions (a batch of combined requests is one).
    pub executions: AtomicU64,
    pub pending: AtomicU64,
    /// Every answered request's duration, success or failure.
    pub duration: Histogram,
    /// Milliseconds since the epoch of the last inference.
    pub last_inference_ms: AtomicU64,
}
