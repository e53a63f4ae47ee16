//! What happened to a runtime's placement, newest last ([`TimelineEvent`]): loads, unloads
//! and replacements, the autopilot's moves, cores leaving and joining with the cpuset or CPU
//! quota. Kept in a bounded ring (the last [`KEEP`] and at most [`CAPACITY`] events, whichever
//! is fewer), under the loaded models' lock, so that an event is recorded with the change it
//! describes; a reader (the server's dashboard) asks for the ones after the last it saw.

use std::{collections::VecDeque, time::Duration};

/// How long an event is kept.
pub const KEEP: Duration = Duration::from_secs(600);
/// How many events are kept at most (a flapping autopilot cannot grow the ring without bound).
pub const CAPACITY: usize = 2048;

/// One change of the placement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimelineEvent {
    /// Counts from 1 over the runtime's life; a reader passes the last it saw.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `load`, `unload`, `replace`, `grow`, `shrink`, `move`, `cores-left` or `cores-joined`.
    pub kind: &'static str,
    /// The model it concerns, when one.
    pub model: Option<String>,
    /// What the log says of it.
    pub text: String,
}

#[derive(Default)]
pub(crate) struct Timeline {
    events: VecDeque<TimelineEvent>,
    next: u64,
}

impl Timeline {
    pub(crate) fn push(&mut self, kind: &'static str, model: Option<&str>, text: String) {
        let unix_ms = corral_cores::now_unix_ms();
        self.next += 1;
        self.events.push_back(TimelineEvent { seq: self.next, unix_ms, kind, model: model.map(str::to_owned), text });
        let oldest = unix_ms.saturating_sub(KEEP.as_millis() as u64);
        while self.events.len() > CAPACITY || self.events.front().is_some_and(|e| e.unix_ms < oldest) {
            self.events.pop_front();
        }
    }

    /// The kept events after `seq`, oldest first.
    pub(crate) fn since(&self, seq: u64) -> Vec<TimelineEvent> {
        let oldest = corral_cores::now_unix_ms().saturating_sub(KEEP.as_millis() as u64);
        self.events.iter().filter(|e| e.seq > seq && e.unix_ms >= oldest).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_answers_from_a_sequence_number() {
        let mut timeline = Timeline::default();
        for i in 0..CAPACITY + 5 {
            timeline.push("grow", Some("m"), format!("move {i}"));
        }
        let all = timeline.since(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].text, "move 5", "the oldest go first");
        let last = all.last().expect("events").seq;
        assert_eq!(last, (CAPACITY + 5) as u64);
        assert!(timeline.since(last).is_empty());
        assert_eq!(timeline.since(last - 2).len(), 2);
    }
}
