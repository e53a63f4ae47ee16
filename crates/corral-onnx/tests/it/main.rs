//! `auto` on real models: the engine it keeps is the one whose recorded median is lower
//! (a consistency check: which engine wins is the machine's), each engine is kept for some
//! light model, and a disagreement or a model OpenVINO refuses keeps ONNX Runtime with the
//! reason.

use std::{path::PathBuf, process::Command, sync::Arc};

use corral_engine::{Engine, ModelSource, SessionPlacement};
use corral_onnx::auto::AutoEngine;

fn site() -> PathBuf {
    corral_engine::library::project_site_packages().expect("./scripts/setup creates .venv with the model packages")
}

fn auto() -> AutoEngine {
    let lookup = |name: &str| std::env::var(name).ok();
    let ort = corral_engine_ort::OrtEngine::load(lookup).expect("ONNX Runtime");
    let openvino = corral_engine_openvino::OpenVinoEngine::load(lookup).expect("OpenVINO");
    AutoEngine { ort: Arc::new(ort), openvino: Arc::new(openvino) }
}

/// The choice `auto` makes for `path`, on CPU 0, and the engine one session then runs on.
fn chosen(engine: &AutoEngine, path: PathBuf) -> String {
    let prepared = engine.prepare(&ModelSource::Onnx(path)).expect("prepares");
    assert_eq!(prepared.chosen(), None, "nothing is chosen before the first instance");
    let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![0]] }).expect("a session");
    let inputs = corral_engine::sample_inputs(prepared.inputs(), 1);
    session.run(&inputs, false).expect("runs");
    let choice = prepared.chosen().expect("chosen at the first instance");
    let timed: Vec<&str> = choice.medians.iter().map(|(engine, _)| engine.as_str()).collect();
    let reason = &choice.reason;
    assert!(timed.is_empty() || timed == ["onnxruntime", "openvino"], "{timed:?}: {reason}");
    format!("{} ({reason})", choice.engine)
}

/// `ENGINE (median A ms on openvino, B ms on onnxruntime)`: (A, B).
fn medians(reason: &str) -> Option<(f64, f64)> {
    let words: Vec<&str> = reason.split_whitespace().collect();
    let number = |i: usize| words.get(i)?.parse::<f64>().ok();
    (words.get(1) == Some(&"(median")).then(|| Some((number(2)?, number(6)?))).flatten()
}

#[test]
fn auto_keeps_the_faster_agreeing_engine_and_says_why() {
    let engine = auto();
    let light = site().join("onnx/backend/test/data/light");
    let mut kept = Vec::new();
    for model in ["light_inception_v1", "light_densenet121", "light_resnet50", "light_squeezenet"] {
        let choice = chosen(&engine, light.join(format!("{model}.onnx")));
        let winner = choice.split_whitespace().next().expect("an engine").to_owned();
        match medians(&choice) {
            // Both ran and agreed: the lower median is kept.
            Some((ov, ort)) => {
                let faster = if ov < ort { "openvino" } else { "onnxruntime" };
                assert_eq!(winner, faster, "{model}: {choice}");
            }
            None => assert_eq!(winner, "onnxruntime", "{model}: a reason keeps ONNX Runtime: {choice}"),
        }
        if model == "light_squeezenet" {
            // OpenVINO answers this model differently (see corral-engine-openvino's tests).
            assert!(choice.contains("disagrees with ONNX Runtime's"), "{choice}");
        }
        kept.push(winner);
    }
    assert!(kept.iter().any(|e| e == "onnxruntime") && kept.iter().any(|e| e == "openvino"), "{kept:?}");
}

#[test]
fn a_model_openvino_refuses_keeps_onnx_runtime_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("ml.onnx");
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto
node = helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", threshold=0.5)
g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)])
m.ir_version = 8; onnx.save(m, sys.argv[1])
"#;
    let python = site().ancestors().nth(3).expect("the venv").join("bin/python");
    let made = Command::new(python).args(["-c", script]).arg(&path).status().expect("python runs");
    assert!(made.success());
    let choice = chosen(&auto(), path);
    assert!(choice.starts_with("onnxruntime (OpenVINO cannot load it:"), "{choice}");
    // An instance of two cores: ONNX Runtime, with OpenVINO's reason.
    let wide =
        auto().prepare(&ModelSource::Onnx(site().join("magika/models/standard_v3_3/model.onnx"))).expect("prepares");
    wide.session(&SessionPlacement { core_cpus: vec![vec![0], vec![1]] }).expect("an ONNX Runtime session");
    let choice = wide.chosen().expect("chosen");
    assert_eq!(choice.engine, "onnxruntime");
    assert!(choice.reason.contains(corral_engine_openvino::WIDE_REFUSED), "{}", choice.reason);
}
