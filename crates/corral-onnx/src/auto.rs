//! `auto`: ONNX Runtime or OpenVINO, whichever runs a model faster here, chosen by measuring.
//!
//! [`AutoEngine::prepare`] prepares the model on both (ONNX Runtime's signature is the
//! model's; an OpenVINO load error keeps ONNX Runtime, with the reason). The choice waits
//! for the model's first instance, when its cores are known: on a thread pinned to that
//! instance's CPUs, both engines run the sample input `plan --profile` uses, at batch 1,
//! alternately, one warm-up each and then up to [`RUNS`] each or about [`BUDGET`] in all;
//! their outputs must agree ([`agree`]), else ONNX Runtime is kept and the disagreement is
//! the reason; the lower median wins. The choice is made once per prepared model (a version's
//! load) and every later session (replicas, the elastic session, autopilot growth, cpuset
//! moves) takes it, except that an instance of more than one core always runs on ONNX Runtime
//! (OpenVINO refuses them: see `corral_engine_openvino`). A model whose first session spans
//! more than one core (its instances do) has ONNX Runtime chosen, with that reason; the
//! runtime makes an elastic model's wide session after its one-core instances, so that the
//! choice is theirs.
//!
//! The runtime holds the first instance's cores through its scheduler while the timing runs
//! (`Prepared::measures`), so the timing never overlaps another model's calls on a shared
//! core, and those calls wait for it (about [`BUDGET`] and two warm-ups).

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use corral_engine::{
    Engine, EngineChoice as Chosen, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor,
};

/// Timed runs per engine, at most.
pub const RUNS: usize = 20;
/// The timing's budget, both engines together (about).
pub const BUDGET: Duration = Duration::from_secs(1);

/// ONNX Runtime and OpenVINO, one chosen per model by measuring.
pub struct AutoEngine {
    pub ort: Arc<dyn Engine>,
    pub openvino: Arc<dyn Engine>,
}

impl Engine for AutoEngine {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let ort = self.ort.prepare(source)?;
        let openvino = self.openvino.prepare(source).map_err(|e| e.to_string());
        let (inputs, outputs) = (ort.inputs().to_vec(), ort.outputs().to_vec());
        let both = Both { ort, openvino, chosen: OnceLock::new() };
        Ok(Arc::new(Prepared::new(inputs, outputs, both)))
    }
}

/// A model prepared on both engines, and the choice once made.
struct Both {
    ort: Arc<Prepared>,
    openvino: Result<Arc<Prepared>, String>,
    /// Made once: `OnceLock` runs one measurement and has any other caller wait for it.
    chosen: OnceLock<Chosen>,
}

impl Sessions for Both {
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        let chosen = self.choose(placement);
        if chosen.engine == "openvino"
            && placement.cores() == 1
            && let Ok(openvino) = &self.openvino
        {
            return openvino.session(placement);
        }
        self.ort.session(placement)
    }

    fn chosen(&self) -> Option<Chosen> {
        self.chosen.get().cloned()
    }

    fn measures(&self) -> bool {
        self.chosen.get().is_none()
    }
}

impl Both {
    /// The choice, made on the first call (with this placement).
    fn choose(&self, placement: &SessionPlacement) -> Chosen {
        self.chosen.get_or_init(|| self.measure(placement)).clone()
    }

    fn measure(&self, placement: &SessionPlacement) -> Chosen {
        let keep = |reason: String| Chosen { engine: "onnxruntime".to_owned(), reason, medians: Vec::new() };
        let openvino = match &self.openvino {
            Ok(openvino) => openvino,
            Err(error) => return keep(format!("OpenVINO cannot load it: {error}")),
        };
        if placement.cores() > 1 {
            return keep(corral_engine_openvino::WIDE_REFUSED.to_owned());
        }
        let cpus = placement.core_cpus.concat();
        let inputs = corral_engine::sample_inputs(self.ort.inputs(), 1);
        let timed = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    corral_cores::pin_thread(&cpus).map_err(|e| format!("the timing thread: {e}"))?;
                    let ort = self.ort.session(placement).map_err(|e| format!("ONNX Runtime: {e}"))?;
                    let ov = openvino.session(placement).map_err(|e| format!("OpenVINO: {e}"))?;
                    time(ort, ov, &inputs)
                })
                .join()
                .unwrap_or_else(|_| Err("the timing panicked".to_owned()))
        });
        match timed {
            Err(reason) => keep(reason),
            Ok((ort, ov)) => {
                let engine = if ov < ort { "openvino" } else { "onnxruntime" };
                let reason = format!("median {:.3} ms on openvino, {:.3} ms on onnxruntime", ms(ov), ms(ort));
                let medians = vec![("onnxruntime".to_owned(), ort), ("openvino".to_owned(), ov)];
                Chosen { engine: engine.to_owned(), reason, medians }
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Both sessions' medians on `inputs`, run alternately (a warm-up each first, whose outputs
/// must agree), or why OpenVINO is not to be used.
fn time(
    mut ort: Box<dyn Session>,
    mut ov: Box<dyn Session>,
    inputs: &[Tensor],
) -> Result<(Duration, Duration), String> {
    let theirs = ort.run(inputs, false).map_err(|e| format!("ONNX Runtime cannot run the sample input: {e}"))?;
    let ours = ov.run(inputs, false).map_err(|e| format!("OpenVINO cannot run the sample input: {e}"))?;
    agree(&theirs, &ours).map_err(|e| format!("OpenVINO's answer disagrees with ONNX Runtime's: {e}"))?;
    let (mut ort_times, mut ov_times) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while ort_times.len() < RUNS && started.elapsed() < BUDGET {
        for (session, times) in [(&mut ort, &mut ort_times), (&mut ov, &mut ov_times)] {
            let at = Instant::now();
            session.run(inputs, false).map_err(|e| e.to_string())?;
            times.push(at.elapsed());
        }
    }
    Ok((median(ort_times), median(ov_times)))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Whether two engines' outputs agree: the same names, shapes and datatypes; floats within
/// |a - b| <= 1e-4 + 1e-3·|b| (`b` ONNX Runtime's), NaN where the other is NaN; integers,
/// BOOL and BYTES exactly. Else the first difference, in words.
pub fn agree(theirs: &[Tensor], ours: &[Tensor]) -> Result<(), String> {
    if theirs.len() != ours.len() {
        return Err(format!("{} outputs, not {}", ours.len(), theirs.len()));
    }
    for (b, a) in theirs.iter().zip(ours) {
        let what = &b.name;
        if (&a.name, &a.shape, a.datatype()) != (&b.name, &b.shape, b.datatype()) {
            return Err(format!(
                "output `{}` is {} {:?}, not `{what}` {} {:?}",
                a.name,
                a.datatype(),
                a.shape,
                b.datatype(),
                b.shape
            ));
        }
        let float = matches!(
            b.datatype(),
            corral_engine::DataType::F16
                | corral_engine::DataType::BF16
                | corral_engine::DataType::F32
                | corral_engine::DataType::F64
        );
        if !float {
            if a.data != b.data {
                return Err(format!("output `{what}`'s elements differ"));
            }
            continue;
        }
        for (i, (x, y)) in a.data.to_f64().into_iter().zip(b.data.to_f64()).enumerate() {
            let same = if y.is_nan() || x.is_nan() {
                x.is_nan() && y.is_nan()
            } else {
                (x - y).abs() <= 1e-4 + 1e-3 * y.abs()
            };
            if !same {
                return Err(format!("output `{what}`[{i}] is {x}, not {y}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use corral_engine::TensorData;

    use super::*;

    fn tensor(name: &str, data: TensorData) -> Tensor {
        let n = data.len();
        Tensor::new(name, vec![n], data)
    }

    #[test]
    fn outputs_agree_within_the_rule_and_no_further() {
        let b = [tensor("y", TensorData::F32(vec![0.0, 100.0, f32::NAN])), tensor("k", TensorData::I64(vec![3]))];
        let close =
            [tensor("y", TensorData::F32(vec![0.0001, 100.1, f32::NAN])), tensor("k", TensorData::I64(vec![3]))];
        assert_eq!(agree(&b, &close), Ok(()), "within 1e-4 + 1e-3·|b|");
        let far = [tensor("y", TensorData::F32(vec![0.0, 100.2, f32::NAN])), tensor("k", TensorData::I64(vec![3]))];
        assert_eq!(agree(&b, &far), Err("output `y`[1] is 100.19999694824219, not 100".to_owned()));
        let nan = [tensor("y", TensorData::F32(vec![0.0, 100.0, 1.0])), tensor("k", TensorData::I64(vec![3]))];
        assert_eq!(agree(&b, &nan), Err("output `y`[2] is 1, not NaN".to_owned()));
        let int = [tensor("y", TensorData::F32(vec![0.0, 100.0, f32::NAN])), tensor("k", TensorData::I64(vec![4]))];
        assert_eq!(agree(&b, &int), Err("output `k`'s elements differ".to_owned()), "integers exactly");
        let shape = [Tensor::new("y", vec![1, 3], TensorData::F32(vec![0.0, 100.0, f32::NAN])), b[1].clone()];
        assert_eq!(agree(&b, &shape), Err("output `y` is FP32 [1, 3], not `y` FP32 [3]".to_owned()));
        assert_eq!(agree(&b, &b[..1]), Err("1 outputs, not 2".to_owned()));
    }
}
