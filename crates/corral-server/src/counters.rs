//! Triton's per-model counters, kept per model name for the server's life (across unloads and
//! reloads), so that metrics always add up to what clients saw.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use corral_runtime::sync;
/// A duration counter: how many, and their total.
#[derive(Debug, Default)]
pub struct Tally {
    pub count: AtomicU64,
    pub ns: AtomicU64,
}

impl Tally {
    pub(crate) fn add(&self, d: Duration) {
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
    pub(crate) fn observe(&self, d: Duration) {
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
    pub compute: Compute,
    /// Inferences, counting each batch row (Triton's inference_count).
    pub inferences: AtomicU64,
    /// Engine executions (a batch of combined requests is one).
    pub executions: AtomicU64,
    /// Calls begun and not yet answered (see [`Counters::pending`]).
    pub pending: AtomicU64,
    /// Every answered request's duration, success or failure.
    pub duration: Histogram,
    /// Milliseconds since the epoch of the last inference.
    pub last_inference_ms: AtomicU64,
    /// Triton's `batch_stats`: per batch size executed, its executions' times.
    batches: Mutex<BTreeMap<u64, BatchStats>>,
}

/// Triton's `compute_input`, `compute_infer` and `compute_output`, with one count for the
/// three: a call counts once its answer is encoded, with all three times, so no reader ever
/// sees the three counts differ (perf_analyzer refuses statistics where they do).
#[derive(Debug, Default)]
pub struct Compute {
    pub count: AtomicU64,
    pub input_ns: AtomicU64,
    pub infer_ns: AtomicU64,
    pub output_ns: AtomicU64,
}

impl Compute {
    pub(crate) fn add(&self, input: Duration, infer: Duration, output: Duration) {
        self.input_ns.fetch_add(input.as_nanos() as u64, Relaxed);
        self.infer_ns.fetch_add(infer.as_nanos() as u64, Relaxed);
        self.output_ns.fetch_add(output.as_nanos() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// `(count, ns)` of each of the three, in Triton's order: input, infer, output.
    pub fn read(&self) -> [(u64, u64); 3] {
        let count = self.count.load(Relaxed);
        [self.input_ns.load(Relaxed), self.infer_ns.load(Relaxed), self.output_ns.load(Relaxed)].map(|ns| (count, ns))
    }
}

/// One batch size's executions (Triton's `InferBatchStatistics`): each of the three counts
/// every execution of that size, with its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub count: u64,
    pub compute_input_ns: u64,
    pub compute_infer_ns: u64,
    pub compute_output_ns: u64,
}

/// One call counted in [`Counters::pending`] until this is dropped: when it is answered, or
/// when its future is dropped (a client gone mid-call), so the gauge never keeps it.
pub struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Counters {
    /// Counts one call pending for as long as the value returned lives.
    pub fn pending(&self) -> Pending<'_> {
        self.pending.fetch_add(1, Relaxed);
        Pending(&self.pending)
    }

    /// Counts one execution of `batch_size` (Triton: once per model execution, by its total
    /// batch size); `output` may be added later with [`Counters::batch_output`].
    pub(crate) fn batch(&self, batch_size: u64, input: Duration, infer: Duration) {
        let mut batches = sync::lock(&self.batches);
        let stats = batches.entry(batch_size).or_default();
        stats.count += 1;
        stats.compute_input_ns += input.as_nanos() as u64;
        stats.compute_infer_ns += infer.as_nanos() as u64;
    }

    /// Adds an execution's output time to its batch size.
    pub(crate) fn batch_output(&self, batch_size: u64, output: Duration) {
        let mut batches = sync::lock(&self.batches);
        batches.entry(batch_size).or_default().compute_output_ns += output.as_nanos() as u64;
    }

    /// Every batch size executed, ascending.
    pub fn batch_stats(&self) -> Vec<(u64, BatchStats)> {
        sync::lock(&self.batches).iter().map(|(&n, &s)| (n, s)).collect()
    }
}
