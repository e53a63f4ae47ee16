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
    /// Milliseconds since the epoch of the last inference.
    pub last_inference_ms: AtomicU64,
}
