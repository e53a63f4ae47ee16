//! The simulated engine: a model declares K, inputs, outputs, latency and switch cost, and an
//! execution *waits* (sleeps, burning no CPU) for the latency, plus the switch cost when its
//! core last ran another model. Outputs are zeros of the declared shapes. Timing is honest:
//! what the scheduler does with cores is what a real Neuron device would see.

use std::{sync::Arc, time::Duration};

use crate::{EngineError, ModelSource, Prepared, Session, SessionPlacement, Tensor, TensorSpec};

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

    fn prepare(&self, source: &ModelSource) -> Result<Arc<dyn Prepared>, EngineError> {
        match source {
            ModelSource::Sim(model) => Ok(Arc::new(model.clone())),
            ModelSource::Onnx(path) => Err(EngineError::Unsupported {
                engine: "sim",
                reason: format!(
                    "{} is an ONNX file; the simulator runs models declared with platform = \"sim\"",
                    path.display()
                ),
            }),
        }
    }
}

impl Prepared for SimModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn session(&self, _placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        Ok(Box::new(SimSession { model: self.clone() }))
    }
}

struct SimSession {
    model: SimModel,
}

impl Session for SimSession {
    fn run(&mut self, _inputs: &[Tensor], switched: bool) -> Result<Vec<Tensor>, EngineError> {
        let wait = if switched { self.model.latency + self.model.switch } else { self.model.latency };
        std::thread::sleep(wait);
        Ok(self.model.outputs.iter().map(Tensor::zeros_like).collect())
    }
}
