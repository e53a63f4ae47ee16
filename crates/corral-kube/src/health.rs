//! A core's health as the plugin reports it to the kubelet: pure, over what the registry
//! says is held and what the plugin handed out.
//!
//! A core is *unhealthy* while a process holds it in the registry that the plugin did not
//! hand it to (a host process, or a pod that took cores it was not given): the kubelet then
//! stops offering it, so no pod is scheduled onto a core it cannot take.
//!
//! The kubelet never says when a pod ends, and pids do not cross pid namespaces, so "handed"
//! is tracked per core from what the plugin sees:
//!
//! 1. `Allocate` marks the core *handed* (waiting for its container).
//! 2. Seen held while handed: the container took it (*in use*); healthy.
//! 3. Seen free while in use: its holder ended (the pod finished); the mark is dropped, and
//!    whoever takes the core next without an `Allocate` makes it unhealthy.
//!
//! A core handed while its previous holder still holds it waits for that holder to end, then
//! for the new one (the kubelet may hand a core on before the old pod's process has exited).
//! A handed core that is not held yet stays handed (the container may start late), so a
//! container that never takes its cores leaves them marked: a later holder of those reads as
//! healthy. Two
//! consequences, written down since the kubelet's API leaves no better option: a container
//! restarted in the same pod (the kubelet does not call `Allocate` again) shows its cores
//! unhealthy until the pod ends, and a plugin restarted while pods hold cores shows those
//! cores unhealthy until the pods end. Neither stops a running pod; both only keep the
//! kubelet from handing the cores out again.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Handed by `Allocate`, not seen held yet.
    Handed,
    /// Handed, and seen held since.
    InUse,
    /// Handed again while in use: the old holder first ends, then the new one takes it.
    Rehanded,
}

/// What the plugin handed out, per global core index.
#[derive(Debug, Default)]
pub struct Handed {
    marks: BTreeMap<usize, Mark>,
}

impl Handed {
    /// Marks `cores` handed to a container (step 1).
    pub fn hand(&mut self, cores: impl IntoIterator<Item = usize>) {
        for core in cores {
            let mark = match self.marks.get(&core) {
                Some(Mark::InUse | Mark::Rehanded) => Mark::Rehanded,
                _ => Mark::Handed,
            };
            self.marks.insert(core, mark);
        }
    }

    /// Given which cores are held now (`held[i]` for core `i`), updates the marks (steps 2
    /// and 3) and says which cores are healthy.
    pub fn observe(&mut self, held: &[bool]) -> Vec<bool> {
        held.iter()
            .enumerate()
            .map(|(core, &held)| match (held, self.marks.get(&core).copied()) {
                (true, Some(Mark::Rehanded)) => true,
                (false, Some(Mark::Rehanded)) => {
                    self.marks.insert(core, Mark::Handed);
                    true
                }
                (true, Some(_)) => {
                    self.marks.insert(core, Mark::InUse);
                    true
                }
                (true, None) => false,
                (false, Some(Mark::InUse)) => {
                    self.marks.remove(&core);
                    true
                }
                (false, _) => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders health as `+` (healthy) and `-` per core.
    fn show(health: &[bool]) -> String {
        health.iter().map(|&h| if h { '+' } else { '-' }).collect()
    }

    #[test]
    fn a_core_held_without_being_handed_is_unhealthy() {
        let mut handed = Handed::default();
        assert_eq!(show(&handed.observe(&[false, false, false])), "+++");
        // A host process takes nc1: unhealthy while it holds it.
        assert_eq!(show(&handed.observe(&[false, true, false])), "+-+");
        assert_eq!(show(&handed.observe(&[false, false, false])), "+++");
    }

    #[test]
    fn a_handed_core_is_healthy_until_its_holder_ends() {
        let mut handed = Handed::default();
        handed.hand([0, 1]);
        // The container starts late: still handed.
        assert_eq!(show(&handed.observe(&[false, false, false])), "+++");
        assert_eq!(show(&handed.observe(&[true, true, false])), "+++");
        // The pod ends: the marks go, and a later holder without Allocate is unhealthy.
        assert_eq!(show(&handed.observe(&[false, false, false])), "+++");
        assert_eq!(show(&handed.observe(&[true, false, false])), "-++");
        // Handed again by a new Allocate: healthy again once the new pod holds it.
        handed.hand([0]);
        assert_eq!(show(&handed.observe(&[true, false, false])), "+++");
    }

    #[test]
    fn a_core_handed_on_before_its_old_holder_ended_stays_healthy_for_the_new_one() {
        let mut handed = Handed::default();
        handed.hand([1]);
        assert_eq!(show(&handed.observe(&[false, true])), "++");
        // The kubelet hands nc1 to a new pod while the old pod's process still holds it.
        handed.hand([1]);
        assert_eq!(show(&handed.observe(&[false, true])), "++");
        assert_eq!(show(&handed.observe(&[false, false])), "++", "the old holder ended");
        assert_eq!(show(&handed.observe(&[false, true])), "++", "the new pod took it");
        assert_eq!(show(&handed.observe(&[false, false])), "++");
        assert_eq!(show(&handed.observe(&[false, true])), "+-", "taken without an Allocate");
    }
}
