//! OpenVINO through corral's engine on real models from the setup script's packages: outputs
//! agree with ONNX Runtime's (corral's ONNX Runtime engine, itself checked against the
//! onnxruntime Python package) on the same inputs, within |a - b| <= 1e-4 + 1e-3·|b|; an IR
//! model made at test time by the `openvino` package answers as its ONNX source does; every
//! thread OpenVINO starts for an instance stays on that instance's CPU (read back from
//! `/proc/self/task`), two models on two cores; and what OpenVINO cannot run (an instance of
//! two cores, strings) is refused with the reason.

use std::{path::PathBuf, process::Command, sync::Arc};

use corral_engine::{DataType, Engine, ModelSource, Prepared, SessionPlacement, Tensor};
use corral_engine_openvino::OpenVinoEngine;

fn openvino() -> OpenVinoEngine {
    OpenVinoEngine::load(|name| std::env::var(name).ok()).expect("OpenVINO is installed by ./scripts/setup")
}

fn site() -> PathBuf {
    corral_engine::library::project_site_packages().expect("./scripts/setup creates .venv with the model packages")
}

fn python() -> PathBuf {
    site().ancestors().nth(3).expect("site-packages sits in .venv/lib/pythonX").join("bin/python")
}

fn prepare(engine: &dyn Engine, path: &std::path::Path) -> Arc<Prepared> {
    engine.prepare(&ModelSource::Onnx(path.to_owned())).unwrap_or_else(|e| panic!("{}: {e}", engine.name()))
}

fn run(prepared: &Prepared, cpus: Vec<usize>, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut session = prepared.session(&SessionPlacement { core_cpus: vec![cpus] }).expect("a session");
    session.run(inputs, false).expect("runs")
}

/// The sample inputs of `prepared` with its open dimensions as `open` gives them in order
/// (the last repeated): the sizes a model was made for (rapidocr's classifier reads 48x192
/// images; OpenVINO answers no rows for smaller ones, where ONNX Runtime answers).
fn sample(prepared: &Prepared, open: &[usize]) -> Vec<Tensor> {
    let mut inputs = corral_engine::sample_inputs(prepared.inputs(), 1);
    for (input, spec) in inputs.iter_mut().zip(prepared.inputs()) {
        let mut sizes = open.iter().chain(std::iter::repeat(open.last().unwrap_or(&1)));
        let shape: Vec<i64> =
            spec.shape.iter().map(|&d| if d < 0 { *sizes.next().expect("endless") as i64 } else { d }).collect();
        let one = corral_engine::TensorSpec::new(spec.name.clone(), spec.datatype, shape);
        *input = corral_engine::sample_inputs(&[one], 1).remove(0);
    }
    inputs
}

/// Both engines' outputs on `path` (ONNX Runtime's, OpenVINO's), on the sample input with
/// open dimensions of `open`.
fn both(path: &std::path::Path, open: &[usize]) -> (Vec<Tensor>, Vec<Tensor>) {
    let ort = corral_engine_ort::OrtEngine::load(|name| std::env::var(name).ok()).expect("ONNX Runtime");
    let theirs = prepare(&ort, path);
    let ours = prepare(&openvino(), path);
    assert_eq!(ours.inputs().len(), theirs.inputs().len(), "{}: the same inputs", path.display());
    let inputs = sample(&ours, open);
    (run(&theirs, Vec::new(), &inputs), run(&ours, Vec::new(), &inputs))
}

/// Every output agrees: names, shapes, and each element within the agreement rule.
fn agree(model: &str, theirs: &[Tensor], ours: &[Tensor]) {
    assert_eq!(theirs.len(), ours.len(), "{model}: output count");
    for (t, o) in theirs.iter().zip(ours) {
        assert_eq!((&t.name, &t.shape, t.datatype()), (&o.name, &o.shape, o.datatype()), "{model}");
        let (t, o) = (t.data.to_f64(), o.data.to_f64());
        let worst = t.iter().zip(&o).map(|(b, a)| (a - b).abs() - 1e-3 * b.abs()).fold(f64::MIN, f64::max);
        assert!(worst <= 1e-4, "{model}: outputs differ by {worst} past the rule");
    }
}

/// rapidocr's text-direction classifier: real weights, batches of 48x192 images.
const CLASSIFIER: &str = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx";
const IMAGES: &[usize] = &[4, 48, 192];

#[test]
fn real_models_agree_with_onnx_runtime() {
    for (model, open) in [
        (CLASSIFIER, &[4, 48, 192][..]),
        ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", &[1, 96, 160]),
        ("magika/models/standard_v3_3/model.onnx", &[1]),
        ("onnx/backend/test/data/light/light_densenet121.onnx", &[1]),
        ("onnx/backend/test/data/light/light_inception_v1.onnx", &[1]),
    ] {
        let (theirs, ours) = both(&site().join(model), open);
        agree(model, &theirs, &ours);
    }
}

#[test]
fn an_ir_model_made_by_openvino_answers_as_its_onnx_source() {
    let source = site().join(CLASSIFIER);
    let dir = tempfile::tempdir().expect("dir");
    let xml = dir.path().join("model.xml");
    let made = Command::new(python())
        .args(["-c", "import sys, openvino as ov; ov.save_model(ov.convert_model(sys.argv[1]), sys.argv[2], compress_to_fp16=False)"])
        .arg(&source)
        .arg(&xml)
        .output()
        .expect("python runs");
    assert!(made.status.success(), "convert_model: {}", String::from_utf8_lossy(&made.stderr));
    let engine = openvino();
    let ir = prepare(&engine, &xml);
    let onnx = prepare(&engine, &source);
    let inputs = sample(&onnx, IMAGES);
    agree("IR", &run(&onnx, Vec::new(), &inputs), &run(&ir, Vec::new(), &inputs));
    std::fs::remove_file(xml.with_extension("bin")).expect("remove the weights");
    let error = engine.prepare(&ModelSource::Onnx(xml.clone())).err().expect("no weights");
    assert!(error.to_string().contains("model.bin are missing"), "{error}");
}

/// The CPUs a thread may run on (`Cpus_allowed_list` of its status).
fn allowed(tid: &str) -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().to_owned();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?);
    }
    Some(cpus)
}

/// A thread's id and name.
fn name(tid: &str) -> String {
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
    format!("{tid} {}", comm.trim())
}

/// The clock ticks a thread has run (user and system time, from its `stat`).
fn ticks(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is the first; utime and stime
    // are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum()
}

fn threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect()
}

/// Set in the child process [`every_thread_openvino_starts_stays_on_its_instances_cpu`]
/// runs in alone: the other tests' threads, started meanwhile, would count as new.
const ALONE: &str = "CORRAL_TEST_ALONE";

#[test]
fn every_thread_openvino_starts_stays_on_its_instances_cpu() {
    const NAME: &str = "every_thread_openvino_starts_stays_on_its_instances_cpu";
    if std::env::var_os(ALONE).is_none() {
        let exe = std::env::current_exe().expect("this test binary");
        let child = Command::new(exe).args(["--exact", NAME, "--nocapture"]).env(ALONE, "1").output().expect("runs");
        let said = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
        assert!(child.status.success() && said.contains("1 passed"), "alone, the test failed:\n{said}");
        return;
    }
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    let usable: Vec<usize> = (0..nix::sched::CpuSet::count()).filter(|&c| cpus.is_set(c).unwrap_or(false)).collect();
    assert!(usable.len() >= 2, "this test needs two CPUs, the machine's least; it has {usable:?}");
    let engine = openvino();
    let models = [site().join(CLASSIFIER), site().join("onnx/backend/test/data/light/light_inception_v1.onnx")];
    // Two models, each an instance on its own CPU, each run on a thread pinned there (as the
    // runtime's workers are); each one's new threads checked against its CPU.
    for (model, &cpu) in models.iter().zip(&usable) {
        let before = threads();
        let prepared = prepare(&engine, model);
        let inputs = sample(&prepared, IMAGES);
        let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![cpu]] }).expect("a session");
        // Threads that may run elsewhere (this one, the harness's, an earlier instance's) and
        // the CPU time each has used: none may work for this instance.
        let elsewhere = |t: &String| allowed(t).is_some_and(|c| c != [cpu]);
        let others: Vec<(String, u64)> =
            threads().into_iter().filter(elsewhere).map(|t| (t.clone(), ticks(&t))).collect();
        let me = nix::unistd::gettid().to_string();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut one = nix::sched::CpuSet::new();
                one.set(cpu).expect("cpu");
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("pin");
                for _ in 0..20 {
                    session.run(&inputs, false).expect("runs");
                }
            });
        });
        // 20 inferences take hundreds of milliseconds of CPU: a thread elsewhere that shared
        // them would have used tens of clock ticks; one tick is scheduling.
        let worked: Vec<(String, u64)> = others
            .iter()
            .filter(|(t, _)| *t != me)
            .map(|(t, before)| (name(t), ticks(t).saturating_sub(*before)))
            .filter(|&(_, used)| used > 1)
            .collect();
        assert!(worked.is_empty(), "{}: threads off CPU {cpu} worked for it: {worked:?}", model.display());
        let new: Vec<(String, Option<Vec<usize>>)> =
            threads().into_iter().filter(|t| !before.contains(t)).map(|t| (name(&t), allowed(&t))).collect();
        let outside: Vec<_> = new.iter().filter(|(_, c)| c.as_deref().is_some_and(|c| c != [cpu])).collect();
        assert!(outside.is_empty(), "{}: threads outside CPU {cpu}: {outside:?}", model.display());
        drop(session);
    }
}

#[test]
fn what_openvino_cannot_run_is_refused_with_the_reason() {
    let engine = openvino();
    let model = prepare(&engine, &site().join("onnx/backend/test/data/light/light_inception_v1.onnx"));
    let wide = model.session(&SessionPlacement { core_cpus: vec![vec![0], vec![1]] }).err().expect("refused");
    assert!(wide.to_string().contains(corral_engine_openvino::WIDE_REFUSED), "{wide}");
    // A string input: an ONNX graph made here.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("upper.onnx");
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto
g = helper.make_graph([helper.make_node("Identity", ["s"], ["t"])], "g",
    [helper.make_tensor_value_info("s", TensorProto.STRING, [2])], [helper.make_tensor_value_info("t", TensorProto.STRING, [2])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8; onnx.save(m, sys.argv[1])
"#;
    let made = Command::new(python()).args(["-c", script]).arg(&path).status().expect("python runs");
    assert!(made.success());
    let error = engine.prepare(&ModelSource::Onnx(path)).err().expect("strings refused").to_string();
    assert!(error.contains("BYTES") && error.contains("onnxruntime"), "{error}");
    let _ = DataType::Bytes;
}

#[test]
fn a_library_named_wrong_or_missing_says_what_to_do() {
    let wrong = |name: &str| (name == corral_engine_openvino::LIB_ENV).then(|| "/nonexistent".to_owned());
    let error = corral_engine_openvino::find_library(wrong).expect_err("no library there");
    assert_eq!(
        error.to_string(),
        "OPENVINO_LIB_PATH=/nonexistent names no libopenvino_c.so\nhint: point it at the openvino wheel's openvino/libs, or unset it"
    );
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().display().to_string();
    let error = corral_engine_openvino::find_library(|n| (n == corral_engine_openvino::LIB_ENV).then(|| empty.clone()));
    assert!(error.is_err(), "a folder without the library");
    let found = corral_engine_openvino::find_library(|_| None).expect("the wheel's library");
    assert!(found.to_string_lossy().contains("openvino/libs/libopenvino_c.so"), "{}", found.display());
}
