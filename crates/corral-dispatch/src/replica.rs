//! Replica choice: round-robin from a rotating start, skipping a replica that is busy when
//! another is idle; when none is idle, the one with the fewest calls in flight (the first of
//! those from the start). With one caller, replicas are used in order (SPEC §6). Both drivers
//! (the runtime and the planner's simulator) call [`pick_free`]: among idle replicas, one whose
//! cores nothing executes on now goes first.
//!
//! A move (SPEC §11) may retire the replica a call picked before the call reaches it; the
//! call then picks again from the model's new replicas, at most [`PICKS_MAX`] times in all.

/// How many times a call (or a sequence taking its instance) picks a replica at most. A pick
/// after the first follows a move that retired the replica picked: each move replaces a
/// model's replica list once, and one interval of the autopilot may make several, so only a
/// call that more moves than this overtake in a row runs out (it then fails as if its model
/// were unloaded). A model really unloaded ends the picking at once, whatever this says.
pub const PICKS_MAX: usize = 8;

/// The replica for a call among `replicas`, given where the rotation starts (the driver's
/// counter, taken mod the replica count) and each replica's calls queued or executing (read
/// through `in_flight`, so a driver reads its counters in place without collecting them).
pub fn pick(start: usize, replicas: usize, in_flight: impl Fn(usize) -> usize) -> usize {
    pick_free(start, replicas, in_flight, |_| true)
}

/// [`pick`], where among the idle replicas one whose cores nothing executes on now
/// (`cores_free`: no other model's call there, nor a caller that has not lent them) goes
/// first: on cores models share, a call then runs at once rather than queue behind another
/// model while a replica elsewhere could take it. A model calling a model (BLS) thus lands
/// on the cores its caller lent while it waits, not on cores another caller still computes on.
pub fn pick_free(
    start: usize,
    replicas: usize,
    in_flight: impl Fn(usize) -> usize,
    cores_free: impl Fn(usize) -> bool,
) -> usize {
    assert!(replicas > 0, "a model has at least one replica");
    let order = (0..replicas).map(|i| (start % replicas + i) % replicas);
    let mut idle = order.clone().filter(|&i| in_flight(i) == 0);
    let first_idle = idle.next();
    let free = first_idle.filter(|&i| cores_free(i)).or_else(|| idle.find(|&i| cores_free(i)));
    free.or(first_idle).unwrap_or_else(|| order.min_by_key(|&i| in_flight(i)).expect("at least one replica"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_busy_replicas_and_falls_back_to_the_least_loaded() {
        let on = |in_flight: [usize; 3], start| pick(start, 3, |i| in_flight[i]);
        assert_eq!((0..5).map(|s| on([0, 0, 0], s)).collect::<Vec<_>>(), [0, 1, 2, 0, 1]);
        assert_eq!(on([1, 0, 0], 0), 1, "the busy one is skipped");
        assert_eq!(on([0, 1, 1], 2), 0, "wraps to the idle one");
        assert_eq!(on([2, 3, 2], 1), 2, "none idle: fewest in flight, first from the start");
        assert_eq!(on([2, 3, 2], 0), 0);
    }

    #[test]
    fn an_idle_replica_on_free_cores_goes_before_one_whose_cores_execute_another_model() {
        let on = |in_flight: [usize; 3], free: [bool; 3], start| pick_free(start, 3, |i| in_flight[i], |i| free[i]);
        assert_eq!(on([0, 0, 0], [false, true, true], 0), 1, "replica 0's cores are busy");
        assert_eq!(on([0, 0, 0], [false, false, true], 3), 2);
        assert_eq!(on([0, 1, 0], [false, true, false], 0), 0, "no idle replica on free cores: round-robin");
        assert_eq!(on([1, 2, 1], [true, true, true], 1), 2, "none idle: fewest in flight");
        assert_eq!(on([0, 0, 0], [true, true, true], 2), 2, "all free: the rotation");
    }
}
