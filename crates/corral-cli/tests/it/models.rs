//! `corral plan`, `bench` and `demo` as a user runs them, on the FlexEG example repository
//! (simulated) and on real ONNX models.

use std::path::{Path, PathBuf};

use expect_test::expect;
use serde_json::Value;

use super::Host;

fn flexeg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flexeg")
}

/// A copy of the FlexEG repository with C moved to `c_start`.
fn flexeg_with_c_at(c_start: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    for model in ["A", "B", "C", "D"] {
        let text = std::fs::read_to_string(flexeg().join(model).join("config.toml")).expect("config");
        let text = if model == "C" { text.replace("start = 6", &format!("start = {c_start}")) } else { text };
        std::fs::create_dir_all(dir.path().join(model)).expect("mkdir");
        std::fs::write(dir.path().join(model).join("config.toml"), text).expect("write");
    }
    dir
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn plan_draws_the_core_map_and_names_what_does_not_fit() {
    let host = Host::new();
    let repo = flexeg().display().to_string();
    let bad = flexeg_with_c_at(5);
    let bad = bad.path().display().to_string();
    let shared = host.run(&["plan", "--model-repository", &bad, "--device", "sim:inf1.6xlarge"], &[]);
    let out = stdout(&host.run(&["plan", "--model-repository", &repo, "--device", "sim:inf1.6xlarge"], &[]))
        + &stdout(&shared);
    // A layout that does not fit: what fits is drawn, the rest named, and the status says so.
    let partial = host
        .run(&["plan", "--model-repository", &repo, "--device", "sim:inf1.6xlarge"], &[("NEURON_RT_NUM_CORES", "8")]);
    assert_eq!(partial.status.code(), Some(1), "a model that cannot be placed fails the plan");
    let out = out + &String::from_utf8_lossy(&partial.stdout);
    // The core maps are the data (stdout); what is said about them is on stderr.
    expect![[r#"
        16 cores of sim:inf1.6xlarge (default (every core))

        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        A[0]    [=======]
        B[0]              [=================]
        C[0]                                  [============]
        D[0]                                                 [=================]
        16 cores of sim:inf1.6xlarge (default (every core))

        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7  nc8  nc9  nc10 nc11 nc12 nc13 nc14 nc15
        A[0]    [=======]
        B[0]              [=================]
        C[0]                             [============]
        D[0]                                                 [=================]
        shared                            ^^
        8 cores of sim:inf1.6xlarge (NEURON_RT_NUM_CORES=8)

        core    nc0  nc1  nc2  nc3  nc4  nc5  nc6  nc7
        A[0]    [=======]
        B[0]              [=================]
    "#]]
    .assert_eq(&out);
    let said = String::from_utf8_lossy(&shared.stderr).into_owned() + &String::from_utf8_lossy(&partial.stderr);
    expect![[r#"
        warning: C shares nc5 with B: executions there take turns and each change of model is a switch
        error: C: model needs 3 cores from nc6, process has nc0-nc7
        error: D: start nc9 is outside the process cores nc0-nc7
    "#]]
    .assert_eq(&said);
}

#[test]
fn plan_json_and_svg() {
    let host = Host::new();
    let svg = host.dir.path().join("map.svg");
    let repo = flexeg().display().to_string();
    let args = [
        "plan",
        "--model-repository",
        &repo,
        "--device",
        "sim:inf1.6xlarge",
        "--json",
        "--svg",
        svg.to_str().expect("utf-8"),
    ];
    let plan: Value = serde_json::from_str(&stdout(&host.run(&args, &[]))).expect("JSON");
    assert_eq!(plan["cores"], 16);
    assert_eq!(plan["models"][1]["name"], "B");
    assert_eq!(plan["models"][1]["instances"][0], serde_json::json!({"first": 2, "count": 4}));
    let drawing = std::fs::read_to_string(&svg).expect("svg written");
    assert!(drawing.starts_with("<svg") && drawing.trim_end().ends_with("</svg>"));
    assert_eq!(drawing.matches("<rect").count(), 16 + 4, "16 cores and 4 instance bars");
    let output = host.run(&["plan", flexeg().join("A/config.toml").to_str().expect("utf-8")], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is neither a .onnx model nor a repository folder"));
}

#[test]
fn bench_reports_models_and_cores_and_counts_switches_on_shared_cores() {
    let host = Host::new();
    let bench = |repo: &str| -> Value {
        let args = [
            "bench",
            "--model-repository",
            repo,
            "--device",
            "sim:inf1.6xlarge",
            "--threads",
            "8",
            "--requests",
            "80",
            "--json",
        ];
        serde_json::from_str(&stdout(&host.run(&args, &[]))).expect("JSON")
    };
    let good = bench(&flexeg().display().to_string());
    let requests: u64 =
        good["models"].as_array().expect("models").iter().map(|m| m["requests"].as_u64().expect("n")).sum();
    assert_eq!(requests, 80);
    for model in good["models"].as_array().expect("models") {
        assert!(
            model["throughput_per_s"].as_f64().expect("f") > 0.0 && model["p50_ms"].as_f64().expect("f") >= 10.0,
            "{model}"
        );
        assert!(model["p99_ms"].as_f64() >= model["p50_ms"].as_f64());
    }
    assert!(good["cores"].as_array().expect("cores").iter().all(|c| c["switches"] == 0));
    let bad_repo = flexeg_with_c_at(5);
    let bad = bench(&bad_repo.path().display().to_string());
    let nc5 = &bad["cores"][5];
    assert!(nc5["switches"].as_u64().expect("n") > 0, "{nc5}");
    assert!(nc5["busy_fraction"].as_f64().expect("f") > 0.0);
}

/// Regression: every caller rotated over every model, so in the bad FlexEG layout A and D
/// (which share no core) ran at B's and C's pace, as if the bad layout hurt them too. Each
/// model now has its own callers: A and D keep their pace, B and C take turns on nc5.
#[test]
fn bench_gives_each_model_its_own_callers() {
    let host = Host::new();
    let bad_repo = flexeg_with_c_at(5);
    let repo = bad_repo.path().display().to_string();
    let args = ["bench", "--model-repository", &repo, "--device", "sim:inf1.6xlarge", "--threads", "8"];
    let output = host.run(&[&args[..], &["--duration", "1.5", "--json"]].concat(), &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let throughput = |name: &str| -> f64 {
        let models = report["models"].as_array().expect("models");
        let model = models.iter().find(|m| m["name"] == name).expect("model");
        model["throughput_per_s"].as_f64().expect("f")
    };
    let (a, b, c, d) = (throughput("A"), throughput("B"), throughput("C"), throughput("D"));
    // Simulated cores sleep, so the pace does not depend on this machine's load: A and D run
    // two callers each on cores of their own; B and C serialize on nc5 and pay switches.
    assert!(a > 1.5 * b && a > 1.5 * c && d > 1.5 * b && d > 1.5 * c, "A {a} B {b} C {c} D {d}");
}

#[test]
fn demo_places_and_runs_real_models() {
    let host = Host::new();
    // The demo as a user runs it: CORRAL_ONNX_ENGINE unset, each model's engine measured.
    let out = stdout(&host.run(&["demo", "--seconds", "0.3"], &[("CORRAL_ONNX_ENGINE", "")]));
    assert!(out.contains("real models on this machine's"), "{out}");
    for model in ["squeezenet", "magika"] {
        let said = out.lines().find(|l| l.starts_with(&format!("{model}: on "))).expect("the engine line");
        let (engine, why) = said[model.len() + 5..].split_once(": ").expect("engine: why");
        assert!(["onnxruntime", "openvino"].contains(&engine), "{said}");
        // The reason is the timing's medians, or why OpenVINO was not timed or kept.
        assert!(why.starts_with("median ") || why.contains("OpenVINO"), "{said}");
    }
    for expected in ["squeezenet[0]", "magika[0]", "FlexEG on sim:inf1.6xlarge, bad layout", "nc5"] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("squeezenet ") || l.starts_with("magika ")).collect();
    for line in failed {
        assert_eq!(line.split_whitespace().nth(2), Some("0"), "no failed calls: {line}");
    }
}

#[test]
fn a_corrupt_model_is_skipped_with_its_path_and_the_others_serve() {
    let host = Host::new();
    let repo = flexeg_with_c_at(6);
    std::fs::create_dir_all(repo.path().join("broken/1")).expect("mkdir");
    std::fs::write(repo.path().join("broken/1/model.onnx"), b"not a model").expect("write");
    let args = [
        "bench",
        "--model-repository",
        repo.path().to_str().expect("utf-8"),
        "--device",
        "sim:inf1.6xlarge",
        "--requests",
        "8",
        "--json",
    ];
    let output = host.run(&args, &[]);
    let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = repo.path().join("broken/1/model.onnx");
    assert!(
        stderr.contains(&format!("warning: skipping a model: cannot load `broken`: cannot load {}: ", path.display())),
        "{stderr}"
    );
    assert_eq!(report["models"].as_array().expect("models").len(), 4, "A, B, C and D still serve");
}

/// magika from the setup script's packages.
fn magika() -> PathBuf {
    corral_engine_ort::project_site_packages()
        .expect("./scripts/setup creates .venv")
        .join("magika/models/standard_v3_3/model.onnx")
}

/// `CORRAL_ONNX_ENGINE` unset means `auto`: with a library missing, every model runs on the
/// other engine and one notice names what to install; with both missing, tract; an engine
/// asked for by name and missing is an error naming what to install.
#[test]
fn auto_uses_what_is_installed_and_says_what_is_missing() {
    let host = Host::new();
    let model = magika();
    let args = ["bench", model.to_str().expect("utf-8"), "--device", "cpu", "--requests", "4", "--json", "-v"];
    let no_ort = ("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let no_ov = ("OPENVINO_LIB_PATH", "/nonexistent/libopenvino_c.so");
    let unset = ("CORRAL_ONNX_ENGINE", "");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
    let cases: [Case; 5] = [
        (&[("CORRAL_ONNX_ENGINE", "tract")], "engine: tract", None),
        (&[unset], "engine chosen: ", None),
        (
            &[unset, no_ov],
            "engine: onnxruntime",
            Some(
                "notice: every model runs on ONNX Runtime: OPENVINO_LIB_PATH=/nonexistent/libopenvino_c.so names no libopenvino_c.so; run ./scripts/setup or pip install openvino==2026.4.1 to let each model run on the faster of the two",
            ),
        ),
        (
            &[unset, no_ort],
            "engine: openvino",
            Some(
                "notice: every model runs on OpenVINO (models of more than one core and BYTES tensors cannot): ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not name a file; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime",
            ),
        ),
        (
            &[unset, no_ort, no_ov],
            "engine: tract",
            Some(
                "notice: using tract (pure Rust, 1.2x to 5x slower): ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not name a file; run ./scripts/setup or pip install onnxruntime==1.31.* for ONNX Runtime",
            ),
        ),
    ];
    for (env, engine, notice) in cases {
        let output = host.run(&args, env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{env:?}: {stderr}");
        let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        assert_eq!(report["models"][0]["requests"], 4, "{env:?}");
        assert_eq!(report["models"][0]["failures"], 0, "{env:?}");
        assert!(stderr.contains(engine), "{env:?}: `{engine}` in {stderr}");
        let notices: Vec<&str> = stderr.lines().filter(|l| l.starts_with("notice: ")).collect();
        assert_eq!(notices, notice.into_iter().collect::<Vec<_>>(), "{env:?}: one notice, for a missing library only");
    }
    let output = host.run(&args, &[("CORRAL_ONNX_ENGINE", "openvino"), no_ov]);
    assert!(!output.status.success());
    expect![[r#"
        error: CORRAL_ONNX_ENGINE=openvino: OPENVINO_LIB_PATH=/nonexistent/libopenvino_c.so names no libopenvino_c.so
        hint: point it at the openvino wheel's openvino/libs, or unset it
          caused by: OPENVINO_LIB_PATH=/nonexistent/libopenvino_c.so names no libopenvino_c.so
        hint: point it at the openvino wheel's openvino/libs, or unset it
    "#]]
    .assert_eq(&String::from_utf8_lossy(&output.stderr));
    let output = host.run(&args, &[("CORRAL_ORT_SHARED_SESSION", "maybe")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CORRAL_ORT_SHARED_SESSION=maybe is not valid\nhint: use 0 (a session per instance) or 1"),
        "{stderr}"
    );
    let output = host.run(&args, &[("CORRAL_ONNX_ENGINE", "tensorrt")]);
    assert!(!output.status.success());
    expect![[r#"
        error: CORRAL_ONNX_ENGINE=tensorrt is not an engine
        hint: use onnxruntime, openvino, tract or auto (the default)
    "#]]
    .assert_eq(&String::from_utf8_lossy(&output.stderr));
}

#[test]
fn engine_picks_each_models_engine_over_its_configuration() {
    let host = Host::new();
    let model = magika();
    let bench = |engine: &str| {
        let args = ["bench", model.to_str().expect("utf-8"), "--device", "cpu", "--requests", "4", "--json", "-v"];
        host.run(&[&args[..], &["--engine", engine]].concat(), &[])
    };
    for engine in ["onnxruntime", "openvino", "auto"] {
        let output = bench(engine);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{engine}: {stderr}");
        let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        assert_eq!(report["models"][0]["failures"], 0, "{engine}");
        let named = if engine == "auto" { "engine chosen: ".to_owned() } else { format!("engine: {engine}") };
        assert!(stderr.contains(&named), "{engine}: the log says which engine: {stderr}");
    }
    let output = bench("tensorrt");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'tensorrt' for '--engine <ENGINE>'"), "{stderr}");
    assert!(stderr.contains("[possible values: onnxruntime, openvino, tract, auto]"), "{stderr}");
}

/// An elastic model under `auto` is timed on its first one-core instance (the wide session
/// over both cores comes after, on ONNX Runtime, as any instance of more than one core).
#[test]
fn an_elastic_model_chooses_its_engine_on_one_core() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(repo.path().join("m/1")).expect("mkdir");
    std::fs::copy(magika(), repo.path().join("m/1/model.onnx")).expect("copy");
    let config = "platform: \"onnxruntime_onnx\"\ninstance_group [ { count: 2 } ]\nparameters { key: \"corral.elastic\" value { string_value: \"true\" } }\nparameters { key: \"corral.engine\" value { string_value: \"auto\" } }\n";
    std::fs::write(repo.path().join("m/config.pbtxt"), config).expect("config");
    let args = ["bench", "--model-repository", repo.path().to_str().expect("utf-8"), "--device", "cpu"];
    let output = host.run(&[&args[..], &["--requests", "4", "--json", "-v"]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let chosen = stderr.lines().find(|l| l.contains("engine chosen: ")).expect("the choice is logged");
    assert!(chosen.contains("(median "), "timed on one core, not refused for the wide span: {chosen}");
}
