//! The manifests of `deploy/`: parsed by the kserve SDK's own models and validated against
//! Kubernetes' schemas (`deploy_check.py`, in `.venv-clients` from `./scripts/setup --tests`),
//! consistent with each other (ports, probes, the quota rule), and the ServingRuntime's
//! container command, run here, serves the example model (`deploy/models`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use serde_json::Value;

use super::{CHILD_WAIT_MAX, Host, serve::http};

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `deploy_check.py` found: the ServingRuntime and InferenceService as parsed, and a
/// line per document checked.
fn checked() -> Value {
    let python = project().join(".venv-clients/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/deploy_check.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(project().join("deploy"))
        .output()
        .unwrap_or_else(|e| panic!("{} runs ({e}); ./scripts/setup --tests makes it", python.display()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the check prints JSON")
}

/// The value after `flag` in `args`.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().expect("a list").iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

#[test]
fn manifests_are_valid_and_agree_with_each_other() {
    let checked = checked();
    let lines = strings(&checked["checked"]);
    for kind in [
        "Deployment/corral",
        "Service/corral",
        "DaemonSet/corral-device-plugin",
        "InferenceService/",
        "ServingRuntime/",
    ] {
        assert!(lines.iter().any(|l| l.contains(kind)), "{kind} checked: {lines:#?}");
    }

    let runtime = &checked["servingruntime"];
    let container = &runtime["spec"]["containers"][0];
    assert_eq!(container["name"], "kserve-container", "KServe finds its container by this name");
    let args = strings(&container["args"]);
    assert_eq!(strings(&container["command"]), ["corral"]);
    assert_eq!(
        (args[0].as_str(), arg(&args, "--model-repository"), arg(&args, "--host")),
        ("serve", "/mnt/models", "0.0.0.0")
    );
    // KServe's own runtimes: REST on 8080, gRPC on 9000; probes on REST; metrics where the
    // annotation says.
    assert_eq!((arg(&args, "--http-port"), arg(&args, "--grpc-port")), ("8080", "9000"));
    for (probe, path) in [("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], 8080);
    }
    assert_eq!(runtime["spec"]["annotations"]["prometheus.kserve.io/port"], arg(&args, "--metrics-port"));
    assert_eq!(runtime["spec"]["annotations"]["prometheus.kserve.io/path"], "/metrics");
    assert_eq!(strings(&runtime["spec"]["protocolVersions"]), ["v2", "grpc-v2"]);
    // The quota rule: requests equal limits, in whole CPUs, so corral's cores (floor(limit /
    // CPUs per core)) use the whole quota on nodes with and without SMT when it is even.
    let whole_cpus = |resources: &Value| {
        assert_eq!(resources["requests"], resources["limits"], "requests equal limits: {resources}");
        let cpu = resources["limits"]["cpu"].as_str().expect("cpu as a quantity string");
        cpu.parse::<u32>().unwrap_or_else(|_| panic!("a whole number of CPUs, not {cpu}"))
    };
    assert_eq!(whole_cpus(&container["resources"]) % 2, 0);

    let service = &checked["inferenceservice"];
    let model = &service["spec"]["predictor"]["model"];
    assert_eq!(model["runtime"], runtime["metadata"]["name"]);
    assert_eq!(model["protocolVersion"], "v2");
    assert_eq!(model["modelFormat"]["name"], runtime["spec"]["supportedModelFormats"][0]["name"]);
    assert_eq!(whole_cpus(&model["resources"]), whole_cpus(&container["resources"]));
}

/// A child killed when dropped, so a failed assertion leaves no server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ServingRuntime's command, run here: `corral` is the binary under test, /mnt/models a
/// repository made from deploy/models, and the fixed ports 0 (this machine runs other
/// servers at once); everything else as the manifest says.
fn run_the_runtime_command(host: &Host, container: &Value, repo: &Path) -> Killed {
    let mut args = strings(&container["args"]);
    for i in 1..args.len() {
        if args[i - 1].ends_with("-port") {
            args[i] = "0".to_owned();
        }
        if args[i] == "/mnt/models" {
            args[i] = repo.display().to_string();
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = host.corral(&args);
    Killed(
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("corral serve starts"),
    )
}

#[test]
fn the_serving_runtime_command_serves_the_example_model() {
    let runtime = &checked()["servingruntime"];
    let container = &runtime["spec"]["containers"][0];
    let repo = tempfile::tempdir().expect("repo");
    let model = repo.path().join("squeezenet");
    std::fs::create_dir_all(model.join("1")).expect("mkdir");
    std::fs::copy(project().join("deploy/models/squeezenet/config.pbtxt"), model.join("config.pbtxt")).expect("config");
    let site = corral_engine_ort::project_site_packages().expect("./scripts/setup creates .venv");
    std::fs::copy(site.join("onnx/backend/test/data/light/light_squeezenet.onnx"), model.join("1/model.onnx"))
        .expect("squeezenet");

    let host = Host::new();
    let mut server = run_the_runtime_command(&host, container, repo.path());
    let stderr = server.0.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    let line = loop {
        let line = rx.recv_timeout(CHILD_WAIT_MAX).unwrap_or_else(|_| panic!("corral serve did not start: {said:#?}"));
        if line.starts_with("corral serve: HTTP") {
            break line;
        }
        said.push(line);
    };
    // "corral serve: HTTP 0.0.0.0:P gRPC 0.0.0.0:Q metrics 0.0.0.0:R on cpu cores …"
    let words: Vec<&str> = line.split_whitespace().collect();
    let local = |address: &str| format!("127.0.0.1:{}", address.rsplit(':').next().expect("host:port"));
    assert!(words[3].starts_with("0.0.0.0:"), "--host 0.0.0.0 as the manifest says: {line}");
    let (rest, metrics) = (local(words[3]), local(words[7]));

    // As the kubelet probes: live at once, ready once the models loaded.
    let probe = |name: &str| {
        let path = container[name]["httpGet"]["path"].as_str().expect("path");
        http(&rest, "GET", path, b"")
    };
    assert_eq!(probe("livenessProbe").0, 200);
    let deadline = std::time::Instant::now() + CHILD_WAIT_MAX;
    while probe("readinessProbe").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready: {:?}", probe("readinessProbe"));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let zeros = vec!["0"; 3 * 224 * 224].join(",");
    let body =
        format!(r#"{{"inputs":[{{"name":"data_0","shape":[1,3,224,224],"datatype":"FP32","data":[{zeros}]}}]}}"#);
    let (status, answer) = http(&rest, "POST", "/v2/models/squeezenet/infer", body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["outputs"][0]["name"], "softmaxout_1");
    assert_eq!(answer["outputs"][0]["shape"], serde_json::json!([1, 1000, 1, 1]));
    let path = runtime["spec"]["annotations"]["prometheus.kserve.io/path"].as_str().expect("path");
    let (status, text) = http(&metrics, "GET", path, b"");
    assert!(status == 200 && text.contains("squeezenet"), "{status} {text}");
}
