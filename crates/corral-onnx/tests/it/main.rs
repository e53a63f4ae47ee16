//! `auto` on real models: the engine it keeps is the one whose recorded median is lower
//! (a consistency check: which engine wins is the machine's), each engine is kept for some
//! light model, and a disagreement or a model OpenVINO refuses keeps ONNX Runtime with the
//! reason. Both engines answer as onnxruntime's Python package does, on the real-weight
//! models the suite ships and the light ones.

use std::{path::PathBuf, process::Command, sync::Arc};

use corral_engine::{DataType, Engine, ModelSource, SessionPlacement, Tensor, TensorData, TensorSpec};
use corral_onnx::auto::AutoEngine;
use serde_json::{Value, json};

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

/// Runs each model of `cases` (path, inputs) in onnxruntime's Python package: its outputs,
/// by model, in its output order.
fn onnxruntime_in_python(cases: &[(PathBuf, Vec<Tensor>)]) -> Vec<Vec<Tensor>> {
    let dir = tempfile::tempdir().expect("dir");
    let request: Vec<Value> = cases
        .iter()
        .map(|(path, inputs)| {
            let inputs: Vec<Value> = inputs
                .iter()
                .map(|t| json!({"name": t.name, "shape": t.shape, "dtype": t.datatype().to_string(), "data": t.data.to_f64()}))
                .collect();
            json!({"path": path, "inputs": inputs})
        })
        .collect();
    let request_path = dir.path().join("request.json");
    std::fs::write(&request_path, serde_json::to_vec(&request).expect("JSON")).expect("write");
    let script = r#"
import json, sys, numpy as np, onnxruntime as ort
types = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "FP64": np.float64}
answers = []
for case in json.load(open(sys.argv[1])):
    session = ort.InferenceSession(case["path"], providers=["CPUExecutionProvider"])
    feed = {i["name"]: np.array(i["data"], dtype=types[i["dtype"]]).reshape(i["shape"]) for i in case["inputs"]}
    names = [o.name for o in session.get_outputs()]
    answers.append([{"name": n, "shape": list(v.shape), "data": np.asarray(v, dtype=np.float64).ravel().tolist()}
                    for n, v in zip(names, session.run(None, feed))])
json.dump(answers, open(sys.argv[2], "w"))
"#;
    let answer_path = dir.path().join("answer.json");
    let python = site().ancestors().nth(3).expect("the venv").join("bin/python");
    let ran = Command::new(python).args(["-c", script]).arg(&request_path).arg(&answer_path).output().expect("python");
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let answers: Vec<Vec<Value>> = serde_json::from_slice(&std::fs::read(answer_path).expect("answer")).expect("JSON");
    answers
        .into_iter()
        .map(|outputs| {
            outputs
                .into_iter()
                .map(|o| {
                    let shape = o["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize);
                    let data = o["data"].as_array().expect("data").iter().map(|x| x.as_f64().unwrap_or(f64::NAN));
                    Tensor::new(o["name"].as_str().expect("name"), shape.collect(), TensorData::F64(data.collect()))
                })
                .collect()
        })
        .collect()
}

/// The sample input of `specs` with open dimensions of the sizes `open` gives, in order.
fn sample(specs: &[TensorSpec], open: &[usize]) -> Vec<Tensor> {
    specs
        .iter()
        .map(|spec| {
            let mut sizes = open.iter().chain(std::iter::repeat(open.last().unwrap_or(&1)));
            let shape = spec.shape.iter().map(|&d| if d < 0 { *sizes.next().expect("endless") as i64 } else { d });
            let one = TensorSpec::new(spec.name.clone(), spec.datatype, shape.collect());
            corral_engine::sample_inputs(&[one], 1).remove(0)
        })
        .collect()
}

/// `ours` (an engine's outputs, any float or integer type) against onnxruntime's Python
/// package's (as f64): `auto`'s agreement rule, element by element.
fn against_python(theirs: &[Tensor], ours: &[Tensor]) -> Result<(), String> {
    let ours: Vec<Tensor> =
        ours.iter().map(|t| Tensor::new(t.name.clone(), t.shape.clone(), TensorData::F64(t.data.to_f64()))).collect();
    corral_onnx::auto::agree(theirs, &ours)
}

#[test]
fn both_engines_answer_as_onnxruntimes_python_package() {
    let light = |name: &str| format!("onnx/backend/test/data/light/light_{name}.onnx");
    let mut models: Vec<(String, Vec<usize>)> = vec![
        ("magika/models/standard_v3_3/model.onnx".to_owned(), vec![1]),
        ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx".to_owned(), vec![2, 48, 192]),
        ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx".to_owned(), vec![1, 96, 160]),
        ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx".to_owned(), vec![1, 48, 160]),
    ];
    // The light models but the three largest (alexnet, zfnet512 and vgg19: 240 to 550 MB of
    // weights each once folded, seconds apiece to fold and nothing more to learn).
    for name in ["densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet"] {
        models.push((light(name), vec![1]));
    }
    let ort = corral_engine_ort::OrtEngine::load(|name| std::env::var(name).ok()).expect("ONNX Runtime");
    let openvino = corral_engine_openvino::OpenVinoEngine::load(|name| std::env::var(name).ok()).expect("OpenVINO");
    let mut cases = Vec::new();
    let mut prepared = Vec::new();
    for (model, open) in &models {
        let path = site().join(model);
        let on_ort = ort.prepare(&ModelSource::Onnx(path.clone())).unwrap_or_else(|e| panic!("{model}: {e}"));
        let inputs = sample(on_ort.inputs(), open);
        assert!(inputs.iter().all(|t| t.datatype() != DataType::Bytes), "{model}");
        cases.push((path.clone(), inputs));
        prepared.push((on_ort, openvino.prepare(&ModelSource::Onnx(path))));
    }
    let answers = onnxruntime_in_python(&cases);
    let run = |prepared: &corral_engine::Prepared, inputs: &[Tensor]| {
        let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![0]] }).expect("a session");
        session.run(inputs, false).expect("runs")
    };
    let mut openvino_differs = Vec::new();
    for (((model, _), (_, inputs)), ((on_ort, on_ov), theirs)) in
        models.iter().zip(&cases).zip(prepared.iter().zip(&answers))
    {
        assert_eq!(against_python(theirs, &run(on_ort, inputs)), Ok(()), "{model} on onnxruntime");
        let on_ov = on_ov.as_ref().unwrap_or_else(|e| panic!("{model} on OpenVINO: {e}"));
        if let Err(why) = against_python(theirs, &run(on_ov, inputs)) {
            openvino_differs.push(format!("{model}: {why}"));
        }
    }
    // silero-vad (ONNX Runtime's answers on it are the Python tests'): OpenVINO cannot read it
    // (`If` branches of dynamic rank), so auto keeps ONNX Runtime for it with this reason.
    let silero = openvino.prepare(&ModelSource::Onnx(site().join("silero_vad/data/silero_vad.onnx")));
    let error = silero.err().expect("OpenVINO refuses silero-vad").to_string();
    assert!(error.contains("OpenVINO cannot read it"), "{error}");
    // light_squeezenet is the one OpenVINO answers otherwise (auto keeps ONNX Runtime for it).
    assert_eq!(openvino_differs.len(), 1, "{openvino_differs:#?}");
    assert!(openvino_differs[0].starts_with(&light("squeezenet")), "{openvino_differs:#?}");
}
