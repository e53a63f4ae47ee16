//! `corral plan --optimize`, `--write`, `--predict` and `bench --rate` as a user runs them on
//! the FlexEG example (simulated): the optimised layout, its round trip through both config
//! formats, the same arrivals in bench and predict for a seed, and every bad value named;
//! `--profile` on this machine's real cores, of ONNX and Python models, and an ensemble's rate
//! given to its steps.

use std::path::Path;

use expect_test::expect;
use serde_json::Value;

use super::{Host, cannot_run};

/// The FlexEG example's four simulated models, copied into a folder of their own.
pub(super) fn flexeg() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flexeg");
    for model in ["A", "B", "C", "D"] {
        std::fs::create_dir_all(dir.path().join(model)).expect("mkdir");
        std::fs::copy(from.join(model).join("config.toml"), dir.path().join(model).join("config.toml")).expect("copy");
    }
    dir
}

fn run(host: &Host, args: &[&str]) -> (i32, String, String) {
    let output = host.run(args, &[]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn optimize_writes_a_layout_both_config_formats_read_back() {
    let host = Host::new();
    let repo = flexeg();
    let path = repo.path().to_str().expect("utf-8");
    // D's placement as Triton's config.pbtxt would hold it (a simulated model still needs its
    // config.toml for the model itself; a config.pbtxt beside it is where an ONNX model's would be).
    let base = ["plan", "--model-repository", path, "--device", "sim:inf1.6xlarge"];
    let (code, out, err) =
        run(&host, &[&base[..], &["--optimize", "--rate", "A=400,B=100,C=100,D=100", "--write"]].concat());
    assert_eq!(code, 0, "{err}");
    expect![[r#"
        16 cores of sim:inf1.6xlarge (default (every core))

        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        A[0]    [=======]
        A[1]              [=======]
        B[0]                        [=================]
        C[0]                                            [============]
        D[0]                                                           [=================]
    "#]]
    .assert_eq(&out);
    assert!(err.contains("written: each model's placement in its config"), "said on stderr: {err}");
    let a = std::fs::read_to_string(repo.path().join("A/config.toml")).expect("read");
    assert!(a.contains("[placement]\nstarts = [0, 2]\n") && !a.contains("start = 0"), "{a}");
    assert!(
        a.contains("# Model A of the FlexEG guide") && a.contains("latency_ms = 10"),
        "everything else is kept: {a}"
    );
    // Read back: the plain plan draws the written layout.
    let (code, again, _) = run(&host, &base);
    assert_eq!(code, 0);
    assert_eq!(again, out);
}

#[test]
fn write_rewrites_a_config_pbtxt_placement_and_nothing_else() {
    let host = Host::new();
    let dir = tempfile::tempdir().expect("dir");
    let model = dir.path().join("m");
    std::fs::create_dir_all(model.join("1")).expect("mkdir");
    std::fs::write(model.join("1/model.onnx"), b"placeholder: plan reads no model file").expect("write");
    let config = "name: \"m\"\nbackend: \"onnxruntime\"\nmax_batch_size: 0\n# kept as written\ninstance_group [ { kind: KIND_CPU } ]\nparameters { key: \"corral.start\" value { string_value: \"3\" } }\nparameters { key: \"corral.cores\" value { string_value: \"2\" } }\n";
    std::fs::write(model.join("config.pbtxt"), config).expect("pbtxt");
    let path = dir.path().to_str().expect("utf-8");
    let base = ["plan", "--model-repository", path, "--device", "sim:8"];
    let (code, _, err) = run(&host, &[&base[..], &["--optimize"]].concat());
    assert_eq!(code, 1, "an ONNX model needs its profile");
    assert!(err.contains("is an ONNX model with no") && err.contains("corral plan --profile"), "{err}");
    let profile = r#"{"device": "cpu", "cores_per_instance": 2, "samples_ms": [2.0, 2.0, 3.0]}"#;
    std::fs::write(model.join("profile.json"), profile).expect("profile");
    let (code, _, err) = run(&host, &[&base[..], &["--optimize", "--write"]].concat());
    assert_eq!(code, 0, "{err}");
    expect![[r#"
        name: "m"
        backend: "onnxruntime"
        max_batch_size: 0
        # kept as written
        instance_group [ { kind: KIND_CPU } ]
        parameters { key: "corral.cores" value { string_value: "2" } }
        parameters { key: "corral.starts" value { string_value: "0,2,4,6" } }
    "#]]
    .assert_eq(&std::fs::read_to_string(model.join("config.pbtxt")).expect("read"));
    let (code, out, _) = run(&host, &[&base[..], &["--json"]].concat());
    assert_eq!(code, 0);
    let plan: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(plan["models"][0]["instances"].as_array().map(Vec::len), Some(4), "{plan}");
}

#[test]
fn predict_shows_the_bad_layout_halving_b_and_c_before_anything_loads() {
    let host = Host::new();
    let good = flexeg();
    let bad = flexeg();
    let c = bad.path().join("C/config.toml");
    std::fs::write(&c, std::fs::read_to_string(&c).expect("read").replace("start = 6", "start = 5")).expect("write");
    let predict = |repo: &tempfile::TempDir| -> Value {
        let args = ["plan", "--model-repository", repo.path().to_str().expect("utf-8"), "--device", "sim:inf1.6xlarge"];
        let rates = ["--predict", "--rate", "A=80,B=80,C=80,D=80", "--duration", "20", "--json"];
        let (code, out, err) = run(&host, &[&args[..], &rates].concat());
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).expect("JSON")
    };
    let throughput = |report: &Value, name: &str| -> f64 {
        let models = report["models"].as_array().expect("models");
        models.iter().find(|m| m["name"] == name).expect("model")["throughput_per_s"].as_f64().expect("f")
    };
    let (good, bad) = (predict(&good), predict(&bad));
    assert_eq!(bad["layout"][2]["starts"], serde_json::json!([5]), "the layout it ran: {}", bad["layout"]);
    for model in ["B", "C"] {
        let (g, b) = (throughput(&good, model), throughput(&bad, model));
        assert!(b < 0.75 * g, "{model}: {b} calls/s sharing nc5, {g} apart");
    }
    for model in ["A", "D"] {
        assert_eq!(throughput(&good, model), throughput(&bad, model), "{model} shares nothing in either");
    }
    assert!(bad["cores"][5]["switches"].as_u64().expect("n") > 0);
}

#[test]
fn bench_and_predict_send_the_same_calls_for_a_seed() {
    let host = Host::new();
    let repo = flexeg();
    let path = repo.path().to_str().expect("utf-8");
    let load = ["--rate", "A=30,C=20", "--cv", "2", "--seed", "7", "--duration", "1", "--json"];
    let device = ["--model-repository", path, "--device", "sim:inf1.6xlarge"];
    let (code, measured, err) = run(&host, &[&["bench"][..], &device, &load].concat());
    assert_eq!(code, 0, "{err}");
    let (code, predicted, err) = run(&host, &[&["plan", "--predict"][..], &device, &load].concat());
    assert_eq!(code, 0, "{err}");
    let requests = |text: &str| -> Vec<(String, u64)> {
        let report: Value = serde_json::from_str(text).expect("JSON");
        report["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| (m["name"].as_str().expect("name").to_owned(), m["requests"].as_u64().expect("n")))
            .collect()
    };
    let sent = requests(&measured);
    assert_eq!(sent, requests(&predicted));
    assert!(
        sent.iter().any(|(name, n)| name == "A" && *n > 10) && sent.iter().any(|(name, n)| name == "B" && *n == 0),
        "{sent:?}"
    );
}

#[test]
fn bad_planning_values_are_named() {
    let host = Host::new();
    let repo = flexeg();
    let path = repo.path().to_str().expect("utf-8");
    let plan = ["plan", "--model-repository", path, "--device", "sim:inf1.6xlarge"];
    let bench = ["bench", "--model-repository", path, "--device", "sim:inf1.6xlarge"];
    for (args, code, says) in [
        (&[&plan[..], &["--predict"]].concat(), 1, "--predict needs the calls each model gets\nhint: give --rate"),
        (
            &[&plan[..], &["--predict", "--rate", "E=1"]].concat(),
            1,
            "--rate names `E`, which is not a model here; the models are A, B, C, D",
        ),
        (&[&plan[..], &["--predict", "--rate", "A=1", "--rate", "A=2"]].concat(), 1, "--rate names `A` twice"),
        (&[&plan[..], &["--predict", "--rate", "A=0"]].concat(), 1, "--rate A=0: a rate must be more than 0"),
        (&[&plan[..], &["--predict", "--rate", "A=fast"]].concat(), 1, "--rate A=fast: `fast` is not a number"),
        (&[&plan[..], &["--predict", "--rate", "A"]].concat(), 1, "--rate `A` is not MODEL=R"),
        (&[&plan[..], &["--predict", "--rate", "A=1", "--cv", "-1"]].concat(), 2, "--cv <C>': must be 0 or more"),
        (&[&plan[..], &["--predict", "--rate", "A=1", "--cv", "x"]].concat(), 2, "--cv <C>': `x` is not a number"),
        (
            &[&plan[..], &["--predict", "--rate", "A=1", "--duration", "0"]].concat(),
            2,
            "--duration <SECS>': must be more than 0",
        ),
        (&[&plan[..], &["--write"]].concat(), 2, "--optimize"),
        (&[&bench[..], &["--rate", "A=1", "--threads", "2"]].concat(), 2, "cannot be used with"),
        (&[&bench[..], &["--rate", "A=1", "--requests", "2"]].concat(), 2, "cannot be used with"),
        (&[&bench[..], &["--seed", "2"]].concat(), 1, "--cv and --seed shape open-loop load: give --rate"),
    ] {
        let (status, _, stderr) = run(&host, args);
        assert_eq!(status, code, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn profile_times_onnx_models_on_real_cores_side_by_side_and_predict_reads_them() {
    let host = Host::new();
    let cores = host.ls("cpu")["cores"].as_array().map_or(0, Vec::len);
    if cores < 2 {
        cannot_run("two-cores", format!("this host has {cores} cpu core(s); profiling side by side needs 2"));
        return;
    }
    let repo = tempfile::tempdir().expect("dir");
    let site = corral_engine_ort::project_site_packages().expect("./scripts/setup creates .venv");
    for (name, from) in [
        ("add", "onnx/backend/test/data/node/test_add/model.onnx"),
        ("magika", "magika/models/standard_v3_3/model.onnx"),
    ] {
        std::fs::create_dir_all(repo.path().join(name).join("1")).expect("mkdir");
        std::fs::copy(site.join(from), repo.path().join(name).join("1/model.onnx")).expect("copy");
    }
    let path = repo.path().to_str().expect("utf-8");
    let (code, out, err) = run(
        &host,
        &["plan", "--profile", "--samples", "7", "--model-repository", path, "--device", "cpu", "--num-cores", "2"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("2 x 7 executions on 1 cores of cpu beside the others").count(), 2, "{out}");
    let sorted = |samples: &Value, what: &str| {
        let samples: Vec<f64> = samples.as_array().expect(what).iter().map(|s| s.as_f64().expect("ms")).collect();
        assert_eq!(samples.len(), 7, "{what}");
        assert!(samples.windows(2).all(|w| w[0] <= w[1]) && samples[0] > 0.0, "{what}");
        samples
    };
    for name in ["add", "magika"] {
        let text = std::fs::read_to_string(repo.path().join(name).join("profile.json")).expect("profile.json");
        let profile: Value = serde_json::from_str(&text).expect("JSON");
        for key in ["samples_ms", "after_idle_ms"] {
            sorted(&profile[key], &format!("{name} {key}: {text}"));
        }
        // Under the tests' CORRAL_ONNX_ENGINE=onnxruntime: one engine, named.
        assert_eq!(profile["engine"], "onnxruntime", "{text}");
        assert!(profile.get("engines").is_none(), "{text}");
    }
    // Under `auto` (the default) a model whose engine was timed is profiled on both; the
    // chosen one's samples are the file's.
    let auto = [("CORRAL_ONNX_ENGINE", "")];
    let profile_args = ["plan", "--profile", "--samples", "7", "--model-repository", path, "--device", "cpu"];
    let output = host.run(&[&profile_args[..], &["--num-cores", "2"]].concat(), &auto);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(repo.path().join("magika/profile.json")).expect("profile.json");
    let profile: Value = serde_json::from_str(&text).expect("JSON");
    let chosen = profile["engine"].as_str().expect("the engine");
    let engines = profile["engines"].as_object().expect("both engines");
    assert_eq!(engines.keys().collect::<Vec<_>>(), ["onnxruntime", "openvino"], "{text}");
    for (engine, samples) in engines {
        let own = sorted(&samples["samples_ms"], &format!("{engine}: {text}"));
        sorted(&samples["after_idle_ms"], &format!("{engine}: {text}"));
        if engine == chosen {
            assert_eq!(Value::from(own), profile["samples_ms"], "the chosen engine's samples are the file's");
        }
    }
    let load = ["--predict", "--rate", "add=20,magika=20", "--duration", "2", "--json"];
    let (code, out, err) = run(&host, &[&["plan", "--model-repository", path, "--device", "cpu"][..], &load].concat());
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let served: Vec<u64> =
        report["models"].as_array().expect("models").iter().map(|m| m["requests"].as_u64().expect("n")).collect();
    assert!(served.iter().all(|&n| n > 0), "{report}");
}

#[test]
fn profile_times_a_python_model_and_an_ensemble_rate_reaches_each_step() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(repo.path().join("plus/1")).expect("mkdir");
    std::fs::write(
        repo.path().join("plus/1/model.py"),
        r#"import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy() + 1)])
                for r in requests]
"#,
    )
    .expect("model.py");
    let io = r#"input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
"#;
    std::fs::write(repo.path().join("plus/config.pbtxt"), format!("backend: \"python\"\n{io}")).expect("config");
    // An ensemble calling plus twice: each of its calls is two calls of plus.
    std::fs::create_dir_all(repo.path().join("twice")).expect("mkdir");
    std::fs::write(
        repo.path().join("twice/config.pbtxt"),
        format!(
            r#"platform: "ensemble"
{io}ensemble_scheduling {{ step [
  {{ model_name: "plus" model_version: -1 input_map {{ key: "x" value: "x" }} output_map {{ key: "y" value: "once" }} }},
  {{ model_name: "plus" model_version: -1 input_map {{ key: "x" value: "once" }} output_map {{ key: "y" value: "y" }} }}
] }}
"#
        ),
    )
    .expect("ensemble config");
    let path = repo.path().to_str().expect("utf-8");
    let interpreter = super::serve::python(".venv");
    let python = [("CORRAL_PYTHON", interpreter.to_str().expect("utf-8"))];
    let plan = ["plan", "--model-repository", path, "--device", "cpu", "--num-cores", "1"];
    let output = host.run(&[&plan[..], &["--profile", "--samples", "5"]].concat(), &python);
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{err}");
    assert!(out.contains("plus: 2 x 5 executions on 1 cores of cpu, python: median"), "{out}");
    assert!(!err.contains("skipping a model"), "the ensemble is no model to skip: {err}");
    let text = std::fs::read_to_string(repo.path().join("plus/profile.json")).expect("profile.json");
    let profile: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(profile["engine"], "python", "{text}");
    assert_eq!(profile["samples_ms"].as_array().map(Vec::len), Some(5), "{text}");
    // The ensemble's rate, twice over, is plus's: the same calls as plus at twice the rate
    // (the same seed, virtual time).
    let predict = |rate: &str| -> (u64, String) {
        let load = ["--predict", "--rate", rate, "--duration", "5", "--seed", "3", "--json"];
        let output = host.run(&[&plan[..], &load].concat(), &[]);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{err}");
        let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let plus = report["models"].as_array().expect("models").iter().find(|m| m["name"] == "plus").cloned();
        (plus.expect("plus")["requests"].as_u64().expect("n"), err)
    };
    let (through_ensemble, said) = predict("twice=20");
    assert!(
        said.contains("note: ensemble `twice` holds no cores (corral serve runs it); each call of it is a call of each step: plus, plus"),
        "{said}"
    );
    let (direct, _) = predict("plus=40");
    assert!(through_ensemble > 100, "plus got {through_ensemble} calls in 5 s at 40/s");
    assert_eq!(through_ensemble, direct, "twice=20 is plus=40");
}
