//! Triton Python models (`model.py`) under `corral serve` on the real `cpu` device, called by
//! tritonclient (`serve_python.py`): a model with no configuration, one with two instances in
//! two stubs pinned inside the server's cores, a stub killed past its execute timeout and one
//! that dies mid-call (both back at the next call, another model answering throughout), load
//! failures naming file and line, BLS calls to ONNX and Python models (sync, async, decoupled,
//! their errors in Triton's words, a model calling itself that gets the exec timeout instead
//! of waiting for itself), an ensemble of Python preprocessing and an ONNX model (and one whose
//! step is missing), model control from a model, and no stub left once the server is
//! SIGKILLed.

use std::{path::Path, time::Duration};

use super::{
    Host,
    serve::{Server, put_onnx, python, site},
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn python_models_serve_tritonclient_in_pinned_stubs_that_die_with_the_server() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&here.join("tests/it/python_repo"), repo.path());
    for model in ["add_sub", "bls"] {
        copy_dir(&here.join("../corral-py/tests/python_models").join(model), &repo.path().join(model));
    }
    put_onnx(repo.path(), "add", site().join("onnx/backend/test/data/node/test_add/model.onnx"));
    // What `control` unloads and loads again.
    put_onnx(repo.path(), "spare", site().join("onnx/backend/test/data/node/test_add/model.onnx"));
    put_onnx(repo.path(), "squeezenet", site().join("onnx/backend/test/data/light/light_squeezenet.onnx"));
    std::fs::write(
        repo.path().join("squeezenet/config.pbtxt"),
        r#"platform: "onnxruntime_onnx"
input [ { name: "data_0", data_type: TYPE_FP32, dims: [ 1, 3, 224, 224 ] } ]
output [ { name: "softmaxout_1", data_type: TYPE_FP32, dims: [ 1, 1000, 1, 1 ] } ]
"#,
    )
    .expect("pbtxt");
    let interpreter = python(".venv");
    // envpy's own environment: the project's .venv, under the model's folder.
    let venv = interpreter.parent().and_then(Path::parent).expect("the .venv folder");
    std::os::unix::fs::symlink(venv, repo.path().join("envpy/env")).expect("link the environment");
    // A short exec timeout: `selfcall` waits that long for a call that cannot start.
    let mut server = Server::start_with(
        &host,
        repo.path(),
        // Explicit mode, every model loaded: `control` loads and unloads models.
        &["--strict-readiness=false", "-v", "--model-control-mode", "explicit", "--load-model", "*"],
        &[("CORRAL_PYTHON", interpreter.to_str().expect("utf-8")), ("CORRAL_EXEC_TIMEOUT", "3")],
    );
    server.wait_ready();
    let ls = host.run(&["ls", "--device", "cpu", "--json"], &[]);
    let listing: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls JSON");
    let server_pid = server.child.id() as u64;
    let cpus: Vec<String> = listing["cores"]
        .as_array()
        .expect("cores")
        .iter()
        .filter(|c| c["owner"]["pid"].as_u64() == Some(server_pid))
        .flat_map(|c| c["cpus"].as_array().cloned().unwrap_or_default())
        .map(|cpu| cpu.to_string())
        .collect();
    let pids_file = repo.path().join("pids.json");
    let ports = [Server::port(&server.http), Server::port(&server.grpc), Server::port(&server.metrics)];
    let stdout = server.run_client(
        "serve_python.py",
        &[ports[0], ports[1], ports[2], &cpus.join(","), pids_file.to_str().expect("utf-8")],
        "python model checks passed",
    );
    eprintln!("{stdout}");
    let log = server.stderr_text();
    assert!(
        log.contains("where_0: where_0 starting in pid"),
        "model.py's stdout is in the server's log, named:\n{log}"
    );
    assert!(log.contains("Python interpreter"), "{log}");

    // SIGKILL: the stubs go with the server (their parent-death signal).
    let stubs: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(&pids_file).expect("pids")).expect("JSON");
    assert_eq!(stubs.len(), 2);
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    // Alive: present and not a zombie waiting for whoever adopted it to reap it.
    let alive = |pid: &&u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stubs.iter().any(|pid| alive(&pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&u32> = stubs.iter().filter(alive).collect();
    assert!(left.is_empty(), "stubs left after the server was killed: {left:?}");
}

#[test]
fn without_auto_complete_a_python_model_must_declare_its_tensors() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&here.join("../corral-py/tests/python_models/add_sub"), &repo.path().join("add_sub"));
    let interpreter = python(".venv");
    let server = Server::start_with(
        &host,
        repo.path(),
        &["--strict-readiness=false", "--disable-auto-complete-config"],
        &[("CORRAL_PYTHON", interpreter.to_str().expect("utf-8"))],
    );
    server.wait_ready();
    let (status, index) = super::serve::http(&server.http, "POST", "/v2/repository/index", b"{}");
    assert_eq!(status, 200, "{index}");
    assert!(index.contains("UNAVAILABLE") && index.contains("declares no output"), "{index}");
}
