//! Gang scheduling of a process's cores: a core executes one thing at a time, and an
//! execution of a K-core instance holds all K cores together.
//!
//! The rules (who may go, aging, switches) are `corral_dispatch::gangs`, shared with the
//! planner's simulator; this module drives them with threads and a clock:
//!
//! 1. A worker that wants to execute calls [`Scheduler::acquire`] with its instance's cores
//!    and model. Under the one scheduler lock it joins the table's line.
//! 2. It goes as soon as the table says it may; otherwise it waits on the condvar, woken
//!    whenever a gang is released or a waiter leaves.
//! 3. The returned [`Gang`] releases all the cores together when dropped and wakes the
//!    waiters.
//! 4. A waiter whose deadline passes leaves the line (waking the others, whom it may have
//!    been blocking) and fails with a timeout.
//!
//! Executions and busy time are atomics per core, added by [`Gang::record`] as each execution
//! ends (before its caller is answered), so statistics and the live publication see every
//! execution at once without taking the lock; switches are counted under the lock in step 2.
//!
//! Cores are taken all at once under a single lock, so no worker ever holds some cores while
//! waiting for others: there is no hold-and-wait, hence no deadlock between gangs.

use std::{
    sync::{
        Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use corral_cores::sync;
use corral_dispatch::gangs::GangTable;
pub use corral_dispatch::gangs::{ModelId, OVERTAKE_MAX};
use corral_placement::CoreSpan;

/// Per-core counters, as read by statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreCounters {
    pub executions: u64,
    pub busy: Duration,
    pub switches: u64,
    /// The model that took this core last.
    pub last_model: Option<ModelId>,
}

/// The cores of one process and who is executing on them.
#[derive(Debug)]
pub struct Scheduler {
    table: Mutex<GangTable>,
    wake: Condvar,
    /// Per core: executions and busy nanoseconds, outside the lock.
    work: Vec<(AtomicU64, AtomicU64)>,
    /// Per core: whether a gang holds it now (written under the lock, read without it).
    held: Vec<AtomicBool>,
}

/// Why a gang could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl Scheduler {
    pub fn new(cores: usize) -> Scheduler {
        let work = (0..cores).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect();
        let held = (0..cores).map(|_| AtomicBool::new(false)).collect();
        Scheduler { table: Mutex::new(GangTable::new(cores)), wake: Condvar::new(), work, held }
    }

    fn lock(&self) -> MutexGuard<'_, GangTable> {
        sync::lock(&self.table)
    }

    /// Takes all cores of `span` for `model`, waiting until `deadline` at most.
    pub fn acquire(&self, span: CoreSpan, model: ModelId, deadline: Instant) -> Result<Gang<'_>, TimedOut> {
        let mut table = self.lock();
        let ticket = table.join(span);
        loop {
            if table.may_go(ticket) {
                let switched = table.go(ticket, model);
                self.hold(span, true);
                return Ok(Gang { scheduler: self, span, switched, model, lent: false });
            }
            let now = Instant::now();
            if now >= deadline {
                let others_wait = table.leave(ticket);
                drop(table);
                if others_wait {
                    self.wake.notify_all();
                }
                return Err(TimedOut);
            }
            table = sync::wait_timeout(&self.wake, table, deadline - now);
        }
    }

    fn hold(&self, span: CoreSpan, held: bool) {
        for core in span.cores() {
            self.held[core].store(held, Relaxed);
        }
    }

    /// Whether no gang holds any core of `span` now, without the lock (a hint: it may
    /// change at once).
    pub fn is_free(&self, span: CoreSpan) -> bool {
        span.cores().all(|core| !self.held[core].load(Relaxed))
    }

    /// Releases `span` and wakes the waiters if any.
    fn release(&self, span: CoreSpan) {
        let others_wait = {
            let mut table = self.lock();
            self.hold(span, false);
            table.release(span)
        };
        if others_wait {
            self.wake.notify_all();
        }
    }

    /// Counters of every core, in index order.
    pub fn counters(&self) -> Vec<CoreCounters> {
        let table = self.lock();
        table
            .cores()
            .iter()
            .zip(&self.work)
            .map(|(core, (executions, busy_ns))| CoreCounters {
                executions: executions.load(Relaxed),
                busy: Duration::from_nanos(busy_ns.load(Relaxed)),
                switches: core.switches,
                last_model: core.last_model,
            })
            .collect()
    }

    /// The cores currently executing (for tests and `top`).
    pub fn busy(&self) -> Vec<bool> {
        self.lock().cores().iter().map(|c| c.busy).collect()
    }
}

/// All K cores of one instance, held for one or more executions.
#[derive(Debug)]
pub struct Gang<'a> {
    scheduler: &'a Scheduler,
    span: CoreSpan,
    switched: bool,
    model: ModelId,
    /// Its cores given back for now ([`Gang::lend`]).
    lent: bool,
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

impl Gang<'_> {
    /// Gives the cores back while the execution waits on other models (a Python model's
    /// BLS call, whose target may share them): without it, a model calling a model on its own
    /// core would wait for itself.
    pub fn lend(&mut self) {
        if !self.lent {
            self.lent = true;
            self.scheduler.release(self.span);
        }
    }

    /// Takes the lent cores again, waiting in line as any gang does (no deadline: the
    /// execution already started, and every other holds them for one execution at a time).
    pub fn reclaim(&mut self) {
        if self.lent {
            let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
            // Never times out with a deadline a year away.
            let again = self.scheduler.acquire(self.span, self.model, far).expect("a gang within a year");
            std::mem::forget(again);
            self.lent = false;
        }
    }
}

impl Drop for Gang<'_> {
    fn drop(&mut self) {
        if !self.lent {
            self.scheduler.release(self.span);
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
        assert!(!scheduler.lock().waiting());
    }

    #[test]
    fn a_lent_gang_lets_another_execute_and_takes_its_cores_back_after_it() {
        let scheduler = Scheduler::new(2);
        let span = CoreSpan::new(0, 2);
        let mut caller = scheduler.acquire(span, 1, far()).expect("free");
        let soon = || Instant::now() + Duration::from_millis(20);
        assert_eq!(scheduler.acquire(span, 2, soon()).err(), Some(TimedOut), "held");
        caller.lend();
        let callee = scheduler.acquire(span, 2, soon()).expect("lent cores are free");
        assert_eq!(scheduler.busy(), vec![true, true]);
        let released = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                released.store(true, Relaxed);
                drop(callee);
            });
            caller.reclaim();
            assert!(released.load(Relaxed), "reclaim waited for the callee's execution");
        });
        assert_eq!(scheduler.busy(), vec![true, true], "the caller holds them again");
        drop(caller);
        assert_eq!(scheduler.busy(), vec![false, false]);
    }
}
