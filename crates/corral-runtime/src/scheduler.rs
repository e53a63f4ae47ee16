//! Gang scheduling of a process's cores: a core executes one thing at a time, and an
//! execution of a K-core instance holds all K cores together.
//!
//! # Protocol
//!
//! 1. A worker that wants to execute calls [`Scheduler::acquire`] with its instance's cores
//!    and model. Under the one scheduler lock it takes a ticket and joins the waiters.
//! 2. It may go when every one of its cores is free and no *earlier* waiter on an
//!    overlapping core stands in the way. An earlier waiter stands in the way if all its
//!    cores are free too (it was first: FIFO), or if it has already been overtaken
//!    [`OVERTAKE_MAX`] times (aging: nothing starves). Otherwise the worker overtakes it,
//!    which keeps idle cores busy when a wide gang waits on a busy one.
//! 3. Going means marking all its cores busy at once, counting a switch on every core whose
//!    last model differs, and leaving the waiters. The returned [`Gang`] releases all the
//!    cores together when dropped and wakes the waiters.
//! 4. A waiter whose deadline passes leaves the waiters (waking the others, whom it may have
//!    been blocking) and fails with a timeout.
//!
//! Executions and busy time are atomics per core, added by [`Gang::record`] as each execution
//! ends (before its caller is answered), so statistics and the live publication see every
//! execution at once without taking the lock; switches are counted under the lock in step 3.
//!
//! Cores are taken all at once under a single lock, so no worker ever holds some cores while
//! waiting for others: there is no hold-and-wait, hence no deadlock between gangs. The
//! earliest waiter that has been overtaken `OVERTAKE_MAX` times blocks every later
//! overlapping waiter, so it runs as soon as its cores drain: waits are bounded.

use std::{
    sync::{
        Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use corral_placement::CoreSpan;

/// How often an earlier waiter may be overtaken before it blocks later overlapping waiters.
pub const OVERTAKE_MAX: u32 = 8;

/// Identifies a loaded model to the scheduler (switches are counted between ids).
pub type ModelId = u64;

/// Per-core counters, as read by statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreCounters {
    pub executions: u64,
    pub busy: Duration,
    pub switches: u64,
    /// The model that took this core last.
    pub last_model: Option<ModelId>,
}

#[derive(Debug, Default)]
struct CoreState {
    busy: bool,
    counters: CoreCounters,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    span: CoreSpan,
    overtaken: u32,
}

#[derive(Debug, Default)]
struct State {
    cores: Vec<CoreState>,
    /// In ticket order.
    waiters: Vec<Waiter>,
    next_ticket: u64,
}

impl State {
    fn all_free(&self, span: CoreSpan) -> bool {
        span.cores().all(|c| !self.cores[c].busy)
    }

    /// Step 2 of the protocol, for the waiter at `position`.
    fn may_go(&self, position: usize) -> bool {
        let me = &self.waiters[position];
        self.all_free(me.span)
            && self.waiters[..position]
                .iter()
                .filter(|earlier| earlier.span.overlaps(&me.span))
                .all(|earlier| earlier.overtaken < OVERTAKE_MAX && !self.all_free(earlier.span))
    }
}

/// The cores of one process and who is executing on them.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    /// Per core: executions and busy nanoseconds, outside the lock.
    work: Vec<(AtomicU64, AtomicU64)>,
}

/// Why a gang could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl Scheduler {
    pub fn new(cores: usize) -> Scheduler {
        let state = State { cores: (0..cores).map(|_| CoreState::default()).collect(), ..State::default() };
        let work = (0..cores).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect();
        Scheduler { state: Mutex::new(state), wake: Condvar::new(), work }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes all cores of `span` for `model`, waiting until `deadline` at most.
    pub fn acquire(&self, span: CoreSpan, model: ModelId, deadline: Instant) -> Result<Gang<'_>, TimedOut> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiters.push(Waiter { ticket, span, overtaken: 0 });
        loop {
            let position =
                state.waiters.iter().position(|w| w.ticket == ticket).expect("a waiter stays until it leaves");
            if state.may_go(position) {
                state.waiters.remove(position);
                for earlier in state.waiters[..position].iter_mut().filter(|w| w.span.overlaps(&span)) {
                    earlier.overtaken += 1;
                }
                let mut switched = false;
                for core in span.cores() {
                    let core = &mut state.cores[core];
                    core.busy = true;
                    if core.counters.last_model.is_some_and(|last| last != model) {
                        core.counters.switches += 1;
                        switched = true;
                    }
                    core.counters.last_model = Some(model);
                }
                return Ok(Gang { scheduler: self, span, switched });
            }
            let now = Instant::now();
            if now >= deadline {
                state.waiters.remove(position);
                let others_wait = !state.waiters.is_empty();
                drop(state);
                if others_wait {
                    self.wake.notify_all();
                }
                return Err(TimedOut);
            }
            state = self.wake.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Counters of every core, in index order.
    pub fn counters(&self) -> Vec<CoreCounters> {
        let mut counters: Vec<CoreCounters> = self.lock().cores.iter().map(|c| c.counters.clone()).collect();
        for (core, (executions, busy_ns)) in counters.iter_mut().zip(&self.work) {
            core.executions = executions.load(Relaxed);
            core.busy = Duration::from_nanos(busy_ns.load(Relaxed));
        }
        counters
    }

    /// The cores currently executing (for tests and `top`).
    pub fn busy(&self) -> Vec<bool> {
        self.lock().cores.iter().map(|c| c.busy).collect()
    }
}

/// All K cores of one instance, held for one or more executions.
#[derive(Debug)]
pub struct Gang<'a> {
    scheduler: &'a Scheduler,
    span: CoreSpan,
    switched: bool,
}

impl Gang<'_> {
    /// True when this gang's first execution switches model on one of its cores; the
    /// flag is consumed so later executions in the same gang do not pay again.
    pub fn take_switched(&mut self) -> bool {
        std::mem::take(&mut self.switched)
    }

    /// Records one execution of `busy` on each core of the gang, visible at once.
    pub fn record(&mut self, busy: Duration) {
        let nanos = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        for core in self.span.cores() {
            let (executions, busy_ns) = &self.scheduler.work[core];
            executions.fetch_add(1, Relaxed);
            busy_ns.fetch_add(nanos, Relaxed);
        }
    }
}

impl Drop for Gang<'_> {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        for core in self.span.cores() {
            let core = &mut state.cores[core];
            core.busy = false;
        }
        let others_wait = !state.waiters.is_empty();
        drop(state);
        if others_wait {
            self.scheduler.wake.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn a_gang_takes_all_its_cores_and_counts_switches() {
        let scheduler = Scheduler::new(4);
        let mut gang = scheduler.acquire(CoreSpan::new(1, 2), 1, far()).expect("free");
        assert!(!gang.take_switched(), "first use is not a switch");
        assert_eq!(scheduler.busy(), [false, true, true, false]);
        gang.record(Duration::from_millis(1));
        drop(gang);
        assert_eq!(scheduler.counters()[1].executions, 1);
        let mut gang = scheduler.acquire(CoreSpan::new(2, 1), 2, far()).expect("free");
        assert!(gang.take_switched());
        assert!(!gang.take_switched(), "paid once per gang");
        drop(gang);
        let switches: Vec<u64> = scheduler.counters().iter().map(|c| c.switches).collect();
        assert_eq!(switches, [0, 0, 1, 0]);
    }

    #[test]
    fn a_busy_core_times_out_a_waiter() {
        let scheduler = Scheduler::new(2);
        let _held = scheduler.acquire(CoreSpan::new(0, 2), 1, far()).expect("free");
        let result = scheduler.acquire(CoreSpan::new(1, 1), 2, Instant::now() + Duration::from_millis(20));
        assert_eq!(result.err(), Some(TimedOut));
        assert!(scheduler.lock().waiters.is_empty());
    }

    #[test]
    fn an_overtaken_waiter_eventually_blocks_later_ones() {
        let state = State {
            cores: (0..2).map(|i| CoreState { busy: i == 1, ..CoreState::default() }).collect(),
            waiters: vec![
                Waiter { ticket: 0, span: CoreSpan::new(0, 2), overtaken: 0 },
                Waiter { ticket: 1, span: CoreSpan::new(0, 1), overtaken: 0 },
            ],
            next_ticket: 2,
        };
        assert!(state.may_go(1), "nc0 is idle and the wide waiter cannot use it yet");
        let state = State {
            waiters: vec![
                Waiter { ticket: 0, span: CoreSpan::new(0, 2), overtaken: OVERTAKE_MAX },
                Waiter { ticket: 1, span: CoreSpan::new(0, 1), overtaken: 0 },
            ],
            ..state
        };
        assert!(!state.may_go(1), "the wide waiter has waited long enough");
    }
}
