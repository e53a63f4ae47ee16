//! How callers and workers wait for each other: look, spin, nap, sleep.
//!
//! Waking a sleeping thread is the dearest part of a handoff. On a VM whose idle CPUs halt at
//! once (the 2-CPU Firecracker VMs this project is measured on poll 0 ns before halting), a
//! futex wake-up of a thread on an idle CPU costs 30-40 µs after a short sleep and 100-200 µs
//! after milliseconds of one (`./bench/runtime.sh parity`: 1.5-2.5% of a 7 ms model, 40% of
//! an 80 µs one). Spinning avoids it but takes a CPU a worker may need. The rules:
//!
//! - A worker that finished a job spins [`SPIN_MAX`] for the next one before parking.
//! - A caller waits by its call's [`Patience`]: a call behind others spins [`SPIN_MAX`] and
//!   sleeps (its answer is a whole execution away). A call that found its replica idle knows
//!   roughly when the answer comes, the replica's last execution: for a sub-millisecond model
//!   it spins through it; for a longer one it naps (sleeps with a timeout, woken early by the
//!   answer if it comes first) until [`LEAD`] before it, then spins, so the wake-up's cost is
//!   paid while the worker still computes.
//! - A caller spins only while its CPU executes none of this process's workers' calls
//!   ([`Executing`] marks them): on a CPU shared with a busy worker it sleeps at once and the
//!   worker keeps the CPU.
//! - Spinning is a loop of looks and the CPU's spin-wait hint, with a `sched_yield` every
//!   [`YIELD_EVERY`] for any other thread of the CPU. Yielding between every two looks (as
//!   corral did) costs half a microsecond a look here, and in 3 of 8 parity runs the worker's
//!   own execution beside such a caller ran 26-31% slower than the raw session's (none of 8
//!   with the hint).

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// How long a caller behind other calls, or an idle worker, spins before sleeping. A handoff
/// between threads that are both awake costs a microsecond or two.
pub(crate) const SPIN_MAX: Duration = Duration::from_micros(30);

/// Executions up to this long are spun through whole by a caller of an idle replica.
const SHORT_COMPUTE: Duration = Duration::from_micros(500);

/// How long before its expected answer a napping caller wakes: a timed wake-up is late by up
/// to 200 µs here (the same halted-CPU cost, plus the kernel's 50 µs timer slack).
const LEAD: Duration = Duration::from_micros(300);

/// Executions longer than this are not napped through: the wake-up is noise beside them.
const NAP_COMPUTE_MAX: Duration = Duration::from_secs(1);

/// How a blocking caller waits for its answer: sleep `nap` (an answer wakes it early), then
/// spin at most `spin`, then sleep until answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Patience {
    pub(crate) nap: Duration,
    pub(crate) spin: Duration,
}

/// The patience of a call that found `queued_before` calls ahead of it on an instance whose
/// last execution took `last_compute_ns` (0: none yet).
pub(crate) fn caller_patience(queued_before: usize, last_compute_ns: u64) -> Patience {
    let last = Duration::from_nanos(last_compute_ns);
    let base = Patience { nap: Duration::ZERO, spin: SPIN_MAX };
    if queued_before > 0 || last.is_zero() {
        base
    } else if last <= SHORT_COMPUTE {
        Patience { nap: Duration::ZERO, spin: last * 2 + SPIN_MAX }
    } else if last <= NAP_COMPUTE_MAX {
        // Spin past the expected end by an eighth of the execution: a slow run still lands.
        Patience { nap: last - LEAD, spin: LEAD + last / 8 }
    } else {
        base
    }
}

/// Polls `ready` for at most `spin` (see the module's rule on spinning); true if it became
/// true.
pub(crate) fn spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    spin_while(spin, &mut ready, || true)
}

/// [`spin_until`] for a caller: also stops (false) as soon as its CPU executes a worker's call.
pub(crate) fn caller_spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    spin_while(spin, &mut ready, || !this_cpu_executes())
}

fn spin_while(spin: Duration, ready: &mut impl FnMut() -> bool, mut may_spin: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    let mut yielded = started;
    loop {
        if ready() {
            return true;
        }
        let now = Instant::now();
        if now - started >= spin || !may_spin() {
            return false;
        }
        if now - yielded >= YIELD_EVERY {
            std::thread::yield_now();
            yielded = Instant::now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A spinning thread yields its CPU this often, for any other thread of the CPU.
const YIELD_EVERY: Duration = Duration::from_micros(4);

/// CPUs above this are not tracked; a caller there never spins past a look.
const TRACKED_CPUS: usize = 1024;

/// Per CPU, how many workers' executions use it now (the worker's thread and the engine's
/// threads of a multi-core or wide session).
static EXECUTIONS: [AtomicU32; TRACKED_CPUS] = [const { AtomicU32::new(0) }; TRACKED_CPUS];

/// Marks `cpus` as executing a call until dropped.
pub(crate) struct Executing<'a>(&'a [usize]);

impl<'a> Executing<'a> {
    pub(crate) fn on(cpus: &'a [usize]) -> Self {
        for &cpu in cpus.iter().filter(|&&cpu| cpu < TRACKED_CPUS) {
            EXECUTIONS[cpu].fetch_add(1, Ordering::Relaxed);
        }
        Executing(cpus)
    }
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        for &cpu in self.0.iter().filter(|&&cpu| cpu < TRACKED_CPUS) {
            EXECUTIONS[cpu].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whether the CPU this thread runs on executes a worker's call now (or cannot be told).
fn this_cpu_executes() -> bool {
    match nix::sched::sched_getcpu() {
        Ok(cpu) if cpu < TRACKED_CPUS => EXECUTIONS[cpu].load(Ordering::Relaxed) > 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use corral_engine::{
        DataType, Engine, EngineError, ModelSource, Prepared, Session, SessionPlacement, Tensor, TensorSpec,
    };

    use super::*;
    use crate::{ModelDef, Runtime, RuntimeSettings};

    /// The tests that mark or read the process-wide per-CPU counts take turns.
    static MARKS: Mutex<()> = Mutex::new(());

    fn pin_to(cpu: usize) {
        let mut one = nix::sched::CpuSet::new();
        one.set(cpu).expect("cpu fits");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("pin the test thread");
    }

    #[test]
    fn a_call_on_an_idle_replica_waits_by_its_last_execution() {
        let us = Duration::from_micros;
        let patience = |nap, spin| Patience { nap, spin };
        assert_eq!(caller_patience(0, 80_000), patience(us(0), us(190)), "80 µs: spin through twice it");
        assert_eq!(caller_patience(0, 6_800_000), patience(us(6_500), us(1_150)), "6.8 ms: nap, then spin");
        assert_eq!(caller_patience(1, 80_000), patience(us(0), SPIN_MAX), "behind another call");
        assert_eq!(caller_patience(1, 6_800_000), patience(us(0), SPIN_MAX), "behind another call");
        assert_eq!(caller_patience(0, 0), patience(us(0), SPIN_MAX), "no execution yet");
        assert_eq!(caller_patience(0, 5_000_000_000), patience(us(0), SPIN_MAX), "a 5 s model");
    }

    #[test]
    fn a_caller_stops_spinning_on_a_cpu_that_executes_a_call() {
        let _turn = corral_cores::sync::lock(&MARKS);
        let cpu = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .ok()
            .and_then(|set| (0..TRACKED_CPUS).find(|&c| set.is_set(c).unwrap_or(false)))
            .expect("an allowed CPU");
        pin_to(cpu);
        let long = Duration::from_secs(5);
        let executing = Executing::on(std::slice::from_ref(&cpu));
        // Counted, not timed: giving up at once is giving up after the first look.
        let mut looks = 0;
        let spun = caller_spin_until(long, || {
            looks += 1;
            false
        });
        assert!(!spun && looks == 1, "gives up after one look beside an execution ({looks})");
        drop(executing);
        let mut looks = 0;
        assert!(
            caller_spin_until(long, || {
                looks += 1;
                looks == 3
            }),
            "spins on a CPU with no execution"
        );
    }

    /// An engine whose executions say when they start and end only when the test opens the
    /// gate: an execution lasts as long as the test needs, however loaded the machine. One
    /// never let through fails after a minute, so a failing test does not hang on its worker.
    #[derive(Default)]
    struct Gate {
        /// (executions started, open)
        state: Mutex<(usize, bool)>,
        changed: Condvar,
    }

    impl Gate {
        fn wait_started(&self, n: usize) {
            let state = corral_cores::sync::lock(&self.state);
            let (state, _) = self
                .changed
                .wait_timeout_while(state, Duration::from_secs(60), |(started, _)| *started < n)
                .expect("gate lock");
            assert!(state.0 >= n, "{n} execution(s) never started: {}", state.0);
        }

        fn open(&self) {
            corral_cores::sync::lock(&self.state).1 = true;
            self.changed.notify_all();
        }
    }

    struct Gated(Arc<Gate>, Vec<TensorSpec>);

    impl Engine for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }

        fn prepare(&self, _source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
            let (gate, inputs) = (self.0.clone(), self.1.clone());
            let sessions =
                move |_: &SessionPlacement| Ok(Box::new(Gated(gate.clone(), inputs.clone())) as Box<dyn Session>);
            Ok(Arc::new(Prepared::new(self.1.clone(), Vec::new(), sessions)))
        }
    }

    impl Session for Gated {
        fn run(&mut self, _inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
            let mut state = corral_cores::sync::lock(&self.0.state);
            state.0 += 1;
            self.0.changed.notify_all();
            let minute = Duration::from_secs(60);
            let (state, waited) =
                self.0.changed.wait_timeout_while(state, minute, |(_, open)| !*open).expect("gate lock");
            drop(state);
            if waited.timed_out() {
                return Err(EngineError::Run("the gate never opened".to_owned()));
            }
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_worker_on_the_real_cpu_device_marks_its_cpu_while_it_executes() {
        let _turn = corral_cores::sync::lock(&MARKS);
        let dir = tempfile::tempdir().expect("temp dir");
        let gate = Arc::new(Gate::default());
        let spec = TensorSpec::new("x", DataType::F32, vec![1]);
        let mut settings = RuntimeSettings::default();
        settings.take.device = Some("cpu".parse().expect("the cpu device"));
        settings.take.lock_dir = Some(dir.path().to_owned());
        settings.take.explicit.num = Some(corral_cores::Source::new("CORRAL_NUM_CORES", "1"));
        settings.onnx_engine = Some(Arc::new(Gated(gate.clone(), vec![spec.clone()])));
        let runtime = Runtime::new(settings).expect("one real core");
        let cpu = runtime.core_stats()[0].cpus[0];
        let model = runtime.load(ModelDef::onnx("gated", "/gated.onnx")).expect("load");
        let executions = || EXECUTIONS[cpu].load(Ordering::Relaxed);
        assert_eq!(executions(), 0, "nothing runs yet");
        let reply = model.submit(vec![Tensor::zeros_like(&spec)]).expect("submit");
        gate.wait_started(1);
        assert_eq!(executions(), 1, "the worker marks its core's CPU while it runs");
        let looker = std::thread::spawn(move || {
            pin_to(cpu);
            let mut looks = 0;
            let spun = caller_spin_until(Duration::from_secs(5), || {
                looks += 1;
                false
            });
            (spun, looks)
        });
        assert_eq!(looker.join().expect("looker"), (false, 1), "a caller on that CPU gives up after one look");
        gate.open();
        reply.wait().expect("answered");
        assert_eq!(executions(), 0, "the mark ends with the execution");
    }
}
