//! tract against ONNX Runtime on real models from the setup script's packages: the same
//! inputs give the same outputs (within 1e-4, relative to the value where it exceeds 1), the
//! weights are shared by sessions, and bad files fail with their path and reason.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use corral_engine::{Engine, ModelSource, Prepared, SessionPlacement, Tensor, TensorData};
use corral_engine_ort::OrtEngine;
use corral_engine_tract::TractEngine;

fn site() -> PathBuf {
    corral_engine_ort::project_site_packages().expect("./scripts/setup creates .venv with the model packages")
}

fn prepare(engine: &dyn Engine, path: &Path) -> Arc<Prepared> {
    engine.prepare(&ModelSource::Onnx(path.to_owned())).unwrap_or_else(|e| panic!("{}: {e}", engine.name()))
}

fn run(prepared: &Prepared, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![]] }).expect("session");
    session.run(inputs, false).expect("runs")
}

/// What a model's outputs look like on the sample input.
#[derive(PartialEq)]
enum Outputs {
    /// Values vary: the comparison checks numbers.
    Varied,
    /// Every value is the same: the onnx wheel's light_* models ship uniform weights (each
    /// class 0.001), and PP-OCR detection finds no text in a synthetic image (all 0). These
    /// check that tract runs the operators and gives the shapes; the varied ones check numbers.
    Flat,
}

/// Runs `model` on both engines, its open dimensions set to `dims` in order of appearance.
fn conforms(model: &str, dims: &[usize], outputs: Outputs) {
    let path = site().join(model);
    let ort = OrtEngine::load(|name| std::env::var(name).ok()).expect("ONNX Runtime is installed by ./scripts/setup");
    let (theirs, ours) = (prepare(&ort, &path), prepare(&TractEngine::new(), &path));
    assert_eq!(theirs.inputs(), ours.inputs(), "{model}: the engines read different inputs");
    let mut open = dims.iter();
    let specs: Vec<_> = ours
        .inputs()
        .iter()
        .map(|spec| {
            let mut spec = spec.clone();
            for d in spec.shape.iter_mut().filter(|d| **d < 0) {
                *d = *open.next().unwrap_or_else(|| panic!("{model}: give more open dimensions")) as i64;
            }
            spec
        })
        .collect();
    assert!(open.next().is_none(), "{model}: fewer open dimensions than given");
    let inputs = corral_engine::sample_inputs(&specs, 1);
    let (expected, actual) = (run(&theirs, &inputs), run(&ours, &inputs));
    assert_eq!(expected.len(), actual.len());
    for (e, a) in expected.iter().zip(&actual) {
        assert_eq!((&e.name, &e.shape), (&a.name, &a.shape), "{model}");
        let (e, a) = (e.data.to_f64(), a.data.to_f64());
        let worst = e.iter().zip(&a).map(|(e, a)| (e - a).abs() / e.abs().max(1.0)).fold(0.0, f64::max);
        assert!(worst <= 1e-4, "{model}: differs by {worst}");
        let varied = e.iter().any(|v| *v != e[0]);
        assert_eq!(varied, outputs == Outputs::Varied, "{model}: its outputs are not what this test expects");
    }
}

#[test]
fn squeezenet() {
    conforms("onnx/backend/test/data/light/light_squeezenet.onnx", &[], Outputs::Flat);
}

#[test]
fn inception_v1() {
    conforms("onnx/backend/test/data/light/light_inception_v1.onnx", &[], Outputs::Flat);
}

#[test]
fn resnet50() {
    conforms("onnx/backend/test/data/light/light_resnet50.onnx", &[], Outputs::Flat);
}

#[test]
fn magika() {
    conforms("magika/models/standard_v3_3/model.onnx", &[2], Outputs::Varied);
}

#[test]
fn silero_vad() {
    conforms("silero_vad/data/silero_vad_16k_sequence.onnx", &[3], Outputs::Varied);
}

#[test]
fn rapidocr_detection() {
    conforms("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", &[1, 64, 96], Outputs::Flat);
}

#[test]
fn rapidocr_recognition() {
    conforms("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", &[1, 48, 96], Outputs::Varied);
}

#[test]
fn rapidocr_angle_classifier() {
    conforms("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", &[1, 48, 192], Outputs::Varied);
}

#[test]
fn each_input_shape_runs_with_the_right_answer() {
    // magika's batch dimension is open; each batch size must give each row the same answer
    // (tract 0.22.5 panics inside an operator at batch 1, which is why 0.21 is pinned).
    let path = site().join("magika/models/standard_v3_3/model.onnx");
    let prepared = prepare(&TractEngine::new(), &path);
    let one = run(&prepared, &corral_engine::sample_inputs(prepared.inputs(), 1)).remove(0);
    for batch in [3, 1, 2] {
        let mut inputs = corral_engine::sample_inputs(prepared.inputs(), 1);
        let TensorData::I32(row) = &inputs[0].data else { panic!("magika reads INT32 bytes") };
        inputs[0].data = TensorData::I32(row.repeat(batch));
        inputs[0].shape[0] = batch;
        let out = run(&prepared, &inputs).remove(0);
        assert_eq!(out.shape[0], batch);
        let (one, out) = (one.data.to_f64(), out.data.to_f64());
        for chunk in out.chunks(one.len()) {
            let worst = chunk.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-5, "batch {batch}: {worst}");
        }
    }
}

#[test]
fn bad_model_files_name_the_path_and_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.onnx");
    let err = TractEngine::new().prepare(&ModelSource::Onnx(missing.clone())).err().expect("missing");
    assert!(err.to_string().starts_with(&format!("cannot load {}: ", missing.display())), "{err}");

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf").expect("write");
    let err = TractEngine::new().prepare(&ModelSource::Onnx(garbage.clone())).err().expect("garbage");
    assert!(err.to_string().starts_with(&format!("cannot load {}: ", garbage.display())), "{err}");
}
