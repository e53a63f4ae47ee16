//! The simulated engine: a model declares K, inputs, outputs, latency and switch cost, and an
//! execution *waits* (sleeps, burning no CPU) for the latency, plus the switch cost when its
//! core last ran another model. Outputs are zeros of the declared shapes. Timing is honest:
//! what the scheduler does with cores is what a real Neuron device would see.
//!
//! A sleep wakes late (the kernel's timer slack, 50 µs by default, and scheduling): 140 µs
//! at the median on this project's 2-CPU machines, 1.4% of a 10 ms model, which the planner's
//! simulator (exact by construction) would then disagree with. So a session's thread asks for
//! a timer slack of 1 ns, and each sleep is shortened by the session's average lateness so
//! far, which puts the mean execution within a few microseconds of the declared latency,
//! still without burning a CPU.

use std::{sync::Arc, time::Duration};

use crate::{EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor, TensorSpec};

/// A simulated model's declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct SimModel {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub latency: Duration,
    pub switch: Duration,
}

/// The engine for [`ModelSource::Sim`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SimEngine;

impl crate::Engine for SimEngine {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        match source {
            ModelSource::Sim(model) => {
                Ok(Arc::new(Prepared::new(model.inputs.clone(), model.outputs.clone(), model.clone())))
            }
            ModelSource::Onnx(path) => Err(EngineError::Unsupported {
                engine: "sim",
                reason: format!(
                    "{} is an ONNX file; the simulator runs models declared with platform = \"sim\"",
                    path.display()
                ),
            }),
            ModelSource::Python(model) => Err(EngineError::Unsupported {
                engine: "sim",
                reason: format!(
                    "{} is a Python model; the simulator runs platform = \"sim\"",
                    model.model_py.display()
                ),
            }),
        }
    }
}

impl Sessions for SimModel {
    fn session(&self, _placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        Ok(Box::new(SimSession { model: self.clone(), late_ns: 0 }))
    }
}

struct SimSession {
    model: SimModel,
    /// How late this session's sleeps woke, on average (1/8 weight per sleep).
    late_ns: u64,
}

thread_local! {
    static PRECISE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Asks for the smallest timer slack for this thread, once.
fn precise_timers() {
    if !PRECISE.get() {
        PRECISE.set(true);
        // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's timer
        // slack; a failure leaves the default, which is only less precise.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    }
}

impl Session for SimSession {
    fn run(&mut self, _inputs: &[Tensor], switched: bool) -> Result<Vec<Tensor>, EngineError> {
        precise_timers();
        let wait = if switched { self.model.latency + self.model.switch } else { self.model.latency };
        let start = std::time::Instant::now();
        let ask = wait.saturating_sub(Duration::from_nanos(self.late_ns));
        if !ask.is_zero() {
            std::thread::sleep(ask);
        }
        let late = start.elapsed().saturating_sub(ask).as_nanos().min(u128::from(u32::MAX)) as u64;
        self.late_ns = self.late_ns - self.late_ns / 8 + late / 8;
        Ok(self.model.outputs.iter().map(Tensor::zeros_like).collect())
    }
}
