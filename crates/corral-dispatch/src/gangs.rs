//! Gangs: a core executes one thing at a time, and an execution of a K-core instance holds
//! all K cores together. [`GangTable`] is who holds which core and who waits, with the rules
//! for who may go; the runtime's scheduler keeps it under one lock and a condvar, the
//! simulator in its event loop.
//!
//! # Rules
//!
//! 1. A worker that wants to execute [`GangTable::join`]s the waiters with its instance's
//!    cores and gets a ticket.
//! 2. It may go ([`GangTable::may_go`]) when every one of its cores is free and no *earlier*
//!    waiter on an overlapping core stands in the way. An earlier waiter stands in the way if
//!    all its cores are free too (it was first: FIFO), or if it has already been overtaken
//!    [`OVERTAKE_MAX`] times (aging: nothing starves). Otherwise the worker overtakes it, which
//!    keeps idle cores busy when a wide gang waits on a busy one.
//! 3. Going ([`GangTable::go`]) marks all its cores busy at once, counts a switch on every
//!    core whose last model differs (a core's first use is none), and leaves the waiters.
//!    The switch cost, where there is one, is paid once per gang: by its first execution.
//! 4. [`GangTable::release`] frees a gang's cores together; [`GangTable::leave`] takes a
//!    waiter out that gave up (its deadline passed). Both say whether others wait, so the
//!    driver wakes them.
//!
//! Cores are taken all at once, so no gang holds some cores while waiting for others: there is
//! no hold-and-wait, hence no deadlock between gangs. The earliest waiter that has been
//! overtaken `OVERTAKE_MAX` times blocks every later overlapping waiter, so it goes as soon as
//! its cores drain: waits are bounded.

use corral_placement::CoreSpan;

/// How often an earlier waiter may be overtaken before it blocks later overlapping waiters.
pub const OVERTAKE_MAX: u32 = 8;

/// Identifies a loaded model (switches are counted between ids; a reload is a new id).
pub type ModelId = u64;

/// A waiter's place in line.
pub type Ticket = u64;

/// One core: whether it executes now, and what it ran last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreSlot {
    pub busy: bool,
    /// The model that took this core last.
    pub last_model: Option<ModelId>,
    /// Times the core changed model.
    pub switches: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Waiter {
    ticket: Ticket,
    span: CoreSpan,
    overtaken: u32,
}

/// The cores of one process and who waits for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GangTable {
    cores: Vec<CoreSlot>,
    /// In ticket order.
    waiters: Vec<Waiter>,
    next_ticket: Ticket,
}

impl GangTable {
    pub fn new(cores: usize) -> GangTable {
        GangTable { cores: vec![CoreSlot::default(); cores], waiters: Vec::new(), next_ticket: 0 }
    }

    pub fn cores(&self) -> &[CoreSlot] {
        &self.cores
    }

    /// Whether anyone waits.
    pub fn waiting(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// The waiting tickets, in line order.
    pub fn tickets(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.waiters.iter().map(|w| w.ticket)
    }

    fn all_free(&self, span: CoreSpan) -> bool {
        span.cores().all(|c| !self.cores[c].busy)
    }

    fn position(&self, ticket: Ticket) -> usize {
        self.waiters.iter().position(|w| w.ticket == ticket).expect("a waiter stays until it goes or leaves")
    }

    /// Rule 1: joins the line for `span`.
    pub fn join(&mut self, span: CoreSpan) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiters.push(Waiter { ticket, span, overtaken: 0 });
        ticket
    }

    /// Rule 2: whether `ticket` may take its cores now.
    pub fn may_go(&self, ticket: Ticket) -> bool {
        let position = self.position(ticket);
        let me = &self.waiters[position];
        self.all_free(me.span)
            && self.waiters[..position]
                .iter()
                .filter(|earlier| earlier.span.overlaps(&me.span))
                .all(|earlier| earlier.overtaken < OVERTAKE_MAX && !self.all_free(earlier.span))
    }

    /// Rule 3: `ticket` (which [`GangTable::may_go`]) takes its cores for `model`; true when a
    /// core switched model.
    pub fn go(&mut self, ticket: Ticket, model: ModelId) -> bool {
        debug_assert!(self.may_go(ticket));
        let position = self.position(ticket);
        let span = self.waiters.remove(position).span;
        for earlier in self.waiters[..position].iter_mut().filter(|w| w.span.overlaps(&span)) {
            earlier.overtaken += 1;
        }
        let mut switched = false;
        for core in span.cores() {
            let core = &mut self.cores[core];
            core.busy = true;
            if core.last_model.is_some_and(|last| last != model) {
                core.switches += 1;
                switched = true;
            }
            core.last_model = Some(model);
        }
        switched
    }

    /// Joins, and goes at once if it may: `Some(switched)`, else `None` (and not waiting).
    pub fn try_take(&mut self, span: CoreSpan, model: ModelId) -> Option<bool> {
        let ticket = self.join(span);
        if self.may_go(ticket) {
            Some(self.go(ticket, model))
        } else {
            self.leave(ticket);
            None
        }
    }

    /// Rule 4: a waiter gives up. True when others still wait (the driver wakes them: this one
    /// may have stood in their way).
    pub fn leave(&mut self, ticket: Ticket) -> bool {
        let position = self.position(ticket);
        self.waiters.remove(position);
        self.waiting()
    }

    /// Rule 4: frees `span`'s cores. True when someone waits.
    pub fn release(&mut self, span: CoreSpan) -> bool {
        for core in span.cores() {
            self.cores[core].busy = false;
        }
        self.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gang_takes_all_its_cores_and_counts_switches_once() {
        let mut table = GangTable::new(4);
        assert_eq!(table.try_take(CoreSpan::new(1, 2), 1), Some(false), "first use is not a switch");
        assert_eq!(table.cores().iter().map(|c| c.busy).collect::<Vec<_>>(), [false, true, true, false]);
        assert_eq!(table.try_take(CoreSpan::new(2, 2), 2), None, "nc2 is busy");
        table.release(CoreSpan::new(1, 2));
        assert_eq!(table.try_take(CoreSpan::new(2, 1), 2), Some(true));
        assert_eq!(table.cores().iter().map(|c| c.switches).collect::<Vec<_>>(), [0, 0, 1, 0]);
    }

    #[test]
    fn an_overtaken_waiter_eventually_blocks_later_ones() {
        let mut table = GangTable::new(2);
        assert_eq!(table.try_take(CoreSpan::new(1, 1), 1), Some(false));
        let wide = table.join(CoreSpan::new(0, 2));
        for round in 0..OVERTAKE_MAX {
            let narrow = table.join(CoreSpan::new(0, 1));
            assert!(table.may_go(narrow), "round {round}: nc0 is idle and the wide waiter cannot use it yet");
            table.go(narrow, 2);
            table.release(CoreSpan::new(0, 1));
        }
        let narrow = table.join(CoreSpan::new(0, 1));
        assert!(!table.may_go(narrow), "the wide waiter has waited long enough");
        table.release(CoreSpan::new(1, 1));
        assert!(table.may_go(wide) && !table.may_go(narrow), "first come, first served once its cores are free");
    }
}
