//! Switch-aware runs: a worker that holds its gang runs more already-queued calls of its own
//! model before releasing the cores, so models sharing a core pay a switch per run instead of
//! per call. The run length is bounded, and the gang table's aging bounds the wait of others.

/// Calls of one model a worker runs in a row on a gang it holds, by default.
pub const RUN_MAX: usize = 8;

/// Whether a worker that has run `in_a_row` calls on its gang takes the next queued one
/// before releasing the cores.
pub fn continues(in_a_row: usize, run_max: usize) -> bool {
    in_a_row < run_max.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_at_its_bound() {
        assert!(continues(1, RUN_MAX));
        assert!(!continues(RUN_MAX, RUN_MAX));
        assert!(!continues(1, 0), "a bound of 0 means one call per gang");
    }
}
