//! ONNX Runtime through corral's engine on real models from the setup script's packages:
//! outputs equal the onnxruntime Python package's on the same input (within 1e-4), and bad
//! model files fail with their path and reason. One-core instances share one session.

use std::{path::PathBuf, process::Command, sync::Arc};

use corral_engine::{DataType, Engine, ModelSource, Prepared, SessionPlacement, TensorData};
use corral_engine_ort::OrtEngine;

fn engine() -> OrtEngine {
    OrtEngine::load(|name| std::env::var(name).ok()).expect("ONNX Runtime is installed by ./scripts/setup")
}

fn site() -> PathBuf {
    corral_engine_ort::project_site_packages().expect("./scripts/setup creates .venv with the model packages")
}

fn python() -> PathBuf {
    site().ancestors().nth(3).expect("site-packages sits in .venv/lib/pythonX").join("bin/python")
}

fn raw(data: &TensorData) -> (Vec<u8>, &'static str) {
    let numpy = match data.datatype() {
        DataType::F32 => "float32",
        DataType::I32 => "int32",
        other => panic!("reference.py reads no {other}"),
    };
    (data.to_le_bytes(), numpy)
}

/// Runs `model` with corral and with Python's onnxruntime on the same inputs and compares.
fn conforms(model: &str, dynamic: usize) {
    let path = site().join(model);
    let prepared: Arc<Prepared> = engine().prepare(&ModelSource::Onnx(path.clone())).expect("loads");
    let inputs = corral_engine::sample_inputs(prepared.inputs(), dynamic);
    let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![]] }).expect("session");
    let ours = session.run(&inputs, false).expect("runs");

    let dir = tempfile::tempdir().expect("dir");
    let mut args = vec![path.display().to_string(), dir.path().display().to_string()];
    for (i, input) in inputs.iter().enumerate() {
        let (bytes, dtype) = raw(&input.data);
        let file = dir.path().join(format!("in{i}.bin"));
        std::fs::write(&file, bytes).expect("write");
        let shape: Vec<String> = input.shape.iter().map(usize::to_string).collect();
        args.push(format!("{}={dtype}:{}:{}", input.name, shape.join("x"), file.display()));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/reference.py");
    let output = Command::new(python()).arg(script).args(&args).output().expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listing = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(listing.lines().count(), ours.len(), "{listing}");
    for (i, (line, mine)) in listing.lines().zip(&ours).enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], mine.name);
        let shape: Vec<String> = mine.shape.iter().map(usize::to_string).collect();
        assert_eq!(fields[2], shape.join("x"), "{model}: shape of {}", mine.name);
        let bytes = std::fs::read(dir.path().join(format!("{i}.bin"))).expect("output");
        let theirs: Vec<f64> = match fields[1] {
            "float32" => {
                bytes.chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes")))).collect()
            }
            other => panic!("compare {other}"),
        };
        let mine = mine.data.to_f64();
        assert_eq!(mine.len(), theirs.len());
        // A model whose answers are all alike would match for any input: it checks nothing.
        assert!(mine.iter().any(|v| *v != mine[0]), "{model}: every value of {} is the same", fields[0]);
        let worst = mine.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-4, "{model}: {} differs by {worst}", fields[0]);
    }
}

// Models with real weights only: the onnx wheel's light_* models answer every input alike
// (uniform weights), so they would pass for any input.
#[test]
fn rapidocr_angle_classifier_matches_python_onnxruntime() {
    conforms("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", 32);
}

#[test]
fn magika_matches_python_onnxruntime() {
    conforms("magika/models/standard_v3_3/model.onnx", 2);
}

#[test]
fn silero_vad_matches_python_onnxruntime() {
    conforms("silero_vad/data/silero_vad_16k_sequence.onnx", 3);
}

#[test]
fn a_two_core_session_gives_the_same_answer() {
    let path = site().join("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let prepared = engine().prepare(&ModelSource::Onnx(path)).expect("loads");
    let input = corral_engine::sample_inputs(prepared.inputs(), 32);
    let cpus = corral_cores::allowed_cpus().expect("affinity");
    let two = SessionPlacement { core_cpus: vec![vec![cpus[0]], vec![*cpus.last().expect("a cpu")]] };
    let one = prepared.session(&SessionPlacement { core_cpus: vec![vec![]] }).expect("session").run(&input, false);
    let both = prepared.session(&two).expect("session").run(&input, false);
    let (one, both) = (one.expect("runs").remove(0).data.to_f64(), both.expect("runs").remove(0).data.to_f64());
    let worst = one.iter().zip(&both).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-5, "{worst}");
}

#[test]
fn bad_model_files_name_the_path_and_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.onnx");
    let err = engine().prepare(&ModelSource::Onnx(missing.clone())).err().expect("missing");
    assert!(err.to_string().starts_with(&format!("cannot load {}: No such file", missing.display())), "{err}");

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf").expect("write");
    let err = engine().prepare(&ModelSource::Onnx(garbage.clone())).err().expect("garbage");
    assert!(err.to_string().starts_with(&format!("cannot load {}: ", garbage.display())), "{err}");

    // A real ONNX file whose operator no engine has.
    let custom = dir.path().join("custom_op.onnx");
    let script = format!(
        "import onnx; from onnx import helper as h, TensorProto as T\n\
         n = h.make_node('NoSuchOp', ['x'], ['y'], domain='corral.test')\n\
         g = h.make_graph([n], 'g', [h.make_tensor_value_info('x', T.FLOAT, [1])], [h.make_tensor_value_info('y', T.FLOAT, [1])])\n\
         m = h.make_model(g, opset_imports=[h.make_opsetid('', 17), h.make_opsetid('corral.test', 1)])\n\
         onnx.save(m, r'{}')",
        custom.display()
    );
    let made = Command::new(python()).args(["-c", &script]).status().expect("python");
    assert!(made.success());
    let err = engine().prepare(&ModelSource::Onnx(custom.clone())).err().expect("unknown op");
    let text = err.to_string();
    assert!(text.starts_with(&format!("cannot load {}: ", custom.display())) && text.contains("NoSuchOp"), "{text}");
}

/// Threads of this process, by id.
fn threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect()
}

/// Set in the child process [`one_core_instances_share_one_session_that_computes_on_their_own_threads`]
/// runs in alone: the other tests' threads, started meanwhile, would count as new.
const ALONE: &str = "CORRAL_TEST_ALONE";

/// Weights once: the one-core instances of a model run on its one session at the same time,
/// each call on its own (pinned) thread, ONNX Runtime starting no thread for them, and every
/// answer exactly the one a lone call gets.
#[test]
fn one_core_instances_share_one_session_that_computes_on_their_own_threads() {
    const NAME: &str = "one_core_instances_share_one_session_that_computes_on_their_own_threads";
    if std::env::var_os(ALONE).is_none() {
        let exe = std::env::current_exe().expect("this test binary");
        let child = Command::new(exe).args(["--exact", NAME, "--nocapture"]).env(ALONE, "1").output().expect("runs");
        let said = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
        assert!(child.status.success() && said.contains("1 passed"), "alone, the test failed:\n{said}");
        return;
    }
    let cpus = corral_cores::allowed_cpus().expect("affinity");
    assert!(cpus.len() >= 2, "this test needs two CPUs, the machine's least; it has {cpus:?}");
    let path = site().join("onnx/backend/test/data/light/light_inception_v1.onnx");
    let prepared = engine().prepare(&ModelSource::Onnx(path)).expect("loads");
    let input = corral_engine::sample_inputs(prepared.inputs(), 1);
    let before = threads();
    let mut lone = prepared.session(&SessionPlacement { core_cpus: vec![vec![cpus[0]]] }).expect("session");
    let expected = lone.run(&input, false).expect("runs").remove(0).data.to_f64();
    let answers: Vec<Vec<Vec<f64>>> = std::thread::scope(|scope| {
        let callers: Vec<_> = [cpus[0], cpus[1]]
            .into_iter()
            .map(|cpu| {
                let (prepared, input) = (&prepared, &input);
                scope.spawn(move || {
                    corral_cores::pin_thread(&[cpu]).expect("pin");
                    let mut session =
                        prepared.session(&SessionPlacement { core_cpus: vec![vec![cpu]] }).expect("a session");
                    (0..10).map(|_| session.run(input, false).expect("runs").remove(0).data.to_f64()).collect()
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().expect("a caller")).collect()
    });
    for answer in answers.iter().flatten() {
        assert_eq!(answer, &expected, "a call beside another answers as a lone call");
    }
    // The callers have ended; whatever thread is left that was not there before is ONNX
    // Runtime's, started for the instances: none may be.
    let new: Vec<String> = threads().into_iter().filter(|t| !before.contains(t)).collect();
    assert!(new.is_empty(), "threads started for one-core instances: {new:?}");
}
