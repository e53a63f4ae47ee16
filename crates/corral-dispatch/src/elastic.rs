//! Elastic instances: a call that finds every replica of an elastic model idle, while recent
//! calls found the model mostly idle too, goes to replica 0 marked wide; its worker then
//! tries, without waiting, to take every replica's core and runs it on the wide session.
//! Under steady traffic of two or more callers, arrivals keep finding calls in flight, so a
//! gap between calls does not make the next one wide and the call after it wait (measured:
//! c2 over gRPC lost 18% without the average).

/// Above this average of calls found in flight on arrival (×1000), no call goes wide: the
/// model is busy enough that its replicas will be wanted.
pub const BUSY_MAX: u64 = 250;

/// The average of calls found in flight on arrival, ×1000, each new arrival weighing 1/8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    pub average: u64,
}

impl Arrivals {
    /// Records an arrival that found `in_flight` calls of the model; returns the new average
    /// and whether the call goes wide.
    pub fn arrive(self, in_flight: u64) -> (Arrivals, bool) {
        let average = self.average - self.average / 8 + in_flight * 1000 / 8;
        (Arrivals { average }, in_flight == 0 && average < BUSY_MAX)
    }
}

/// The cores an elastic model's wide session spans: all its replicas', when each is one core
/// and together they are adjacent; `None` when the replicas do not qualify.
pub fn wide_span(cores_per_instance: usize, instances: &[crate::CoreSpan]) -> Option<crate::CoreSpan> {
    if instances.len() < 2 || cores_per_instance != 1 || instances.iter().any(|s| s.count != 1) {
        return None;
    }
    let mut cores: Vec<usize> = instances.iter().map(|s| s.first).collect();
    cores.sort_unstable();
    let first = cores[0];
    let adjacent = cores.iter().enumerate().all(|(i, &c)| c == first + i);
    adjacent.then(|| crate::CoreSpan::new(first, instances.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_calls_go_wide_and_busy_traffic_does_not() {
        let (state, wide) = Arrivals::default().arrive(0);
        assert!(wide, "a lone call on an idle model");
        let (mut state, wide) = state.arrive(1);
        assert!(!wide, "a call behind another");
        for _ in 0..4 {
            state = state.arrive(2).0;
        }
        assert!(!state.arrive(0).1, "a gap in steady traffic is not idleness");
    }

    #[test]
    fn only_adjacent_single_core_replicas_have_a_wide_span() {
        let span = |f, c| crate::CoreSpan::new(f, c);
        assert_eq!(wide_span(1, &[span(3, 1), span(2, 1)]), Some(span(2, 2)));
        assert_eq!(wide_span(1, &[span(0, 1), span(2, 1)]), None, "not adjacent");
        assert_eq!(wide_span(2, &[span(0, 2), span(2, 2)]), None, "K > 1");
        assert_eq!(wide_span(1, &[span(0, 1)]), None, "one replica");
    }
}
