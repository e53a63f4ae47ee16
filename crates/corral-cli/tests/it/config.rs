//! `config.pbtxt` read as Triton reads it (SPEC §8), through the real server: protobuf's text
//! format with its bools, enums and lists, loads that fail with protobuf's words while the
//! rest serves, the configuration endpoints echoing what was read, and Triton's readiness and
//! exit flags when a model fails at start.

use std::{path::Path, process::Command, time::Duration};

use super::{
    Host,
    serve::{Server, http, put_onnx, python, site},
};

/// `dir/name/1/model.onnx`: the READY-gated sum, READY of `ready_type` (BOOL or INT32).
fn put_ready_sum(dir: &Path, name: &str, ready_type: &str) {
    std::fs::create_dir_all(dir.join(name).join("1")).expect("mkdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ready_sum_model.py");
    let made = Command::new(python(".venv"))
        .arg(script)
        .arg(dir.join(name).join("1/model.onnx"))
        .arg(ready_type)
        .output()
        .expect("python");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
}

/// A sequence model's configuration whose READY control is `ready` (one control's fields;
/// READY is the batcher's to fill, so it is not a declared input).
fn sequence_config(name: &str, ready: &str) -> String {
    format!(
        r#"name: "{name}"
backend: "onnxruntime"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] }}, {{ name: "INPUT1", data_type: 8, dims: 1 }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
# as Triton's generators write controls
sequence_batching {{
  max_sequence_idle_microseconds: 5000000
  control_input [ {{ name: "READY" control [ {{ kind: CONTROL_SEQUENCE_READY {ready} }} ] }} ]
}}
parameters {{ key: "note" value {{ string_value: "as written" }} }}
"#
    )
}

#[test]
fn config_pbtxt_is_read_as_triton_reads_it_and_a_bad_one_fails_alone() {
    let host = Host::new();
    let dir = tempfile::tempdir().expect("dir");
    put_ready_sum(dir.path(), "ready_bool", "BOOL");
    std::fs::write(
        dir.path().join("ready_bool/config.pbtxt"),
        sequence_config("ready_bool", "bool_false_true: [ 0, 1 ]"),
    )
    .expect("pbtxt");
    put_ready_sum(dir.path(), "ready_int", "INT32");
    std::fs::write(
        dir.path().join("ready_int/config.pbtxt"),
        sequence_config("ready_int", "int32_false_true: [ 0, 1 ]"),
    )
    .expect("pbtxt");
    for (name, config) in [
        ("typo", "name: \"typo\"\nbackend: \"onnxruntime\"\n\nmax_batch_sizee: 8\n"),
        ("wrong_type", "backend: \"onnxruntime\"\nmax_batch_size: \"8\"\n"),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        put_ready_sum(dir.path(), name, "INT32");
        std::fs::write(dir.path().join(name).join("config.pbtxt"), config).expect("pbtxt");
    }
    let server = Server::start(&host, dir.path(), &[]);
    server.wait_ready();
    let ports = [Server::port(&server.http), Server::port(&server.grpc)];
    server.run_client("serve_config.py", &ports, "all checks passed");
}

/// The status of `/v2/health/ready` once the server has tried its start-up models.
fn ready_status(server: &Server) -> (u16, String) {
    // Start-up loads are done when the index lists `broken` as unavailable.
    for _ in 0..600 {
        let (_, index) = http(&server.http, "POST", "/v2/repository/index", b"");
        if index.contains("UNAVAILABLE") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    http(&server.http, "GET", "/v2/health/ready", b"")
}

/// A repository with `add` (serves) and `broken` (its configuration reads, its model file is
/// not a model: the load fails in the engine, as a backend's would in Triton).
fn half_broken_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    put_onnx(dir.path(), "add", site().join("onnx/backend/test/data/node/test_add/model.onnx"));
    std::fs::create_dir_all(dir.path().join("broken/1")).expect("mkdir");
    std::fs::write(dir.path().join("broken/1/model.onnx"), b"not an onnx model").expect("write");
    std::fs::write(dir.path().join("broken/config.pbtxt"), "backend: \"onnxruntime\"\n").expect("pbtxt");
    dir
}

#[test]
fn strict_readiness_and_exit_on_error_follow_tritons_flags() {
    let host = Host::new();
    let dir = half_broken_repository();
    // Default: strict readiness (Triton's default), so a model that failed keeps it not ready.
    let server = Server::start(&host, dir.path(), &[]);
    let (status, body) = ready_status(&server);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("broken failed to load (strict readiness)"), "{body}");
    let (status, _) = http(&server.http, "POST", "/v2/models/add/infer", br#"{"inputs":[]}"#);
    assert_eq!(status, 400, "the other model still serves (and answers a bad request as such)");
    drop(server);
    // Triton's forms of a bool, in any case.
    for off in ["--strict-readiness=false", "--strict-readiness=OFF", "--strict-readiness=0"] {
        let server = Server::start(&host, dir.path(), &[off]);
        let (status, body) = ready_status(&server);
        assert_eq!(status, 200, "{off}: {body}");
    }
    // A bad value is refused in Triton's words.
    let refused =
        host.run(&["serve", "--model-repository", dir.path().to_str().expect("utf-8"), "--strict-readiness=yes"], &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value for bool option: yes"), "{stderr}");
    // --exit-on-error: the failed model stops the server, with Triton's words and status 1.
    let mut server = Server::start(&host, dir.path(), &["--exit-on-error=true"]);
    let exited = server.wait_exit(Duration::from_secs(60));
    assert_eq!(exited, Some(1), "{}", server.stderr_text());
    assert!(
        server.stderr_text().contains("error: creating server: Internal - failed to load all models"),
        "{}",
        server.stderr_text()
    );
}

/// The flags Triton's own test scripts start servers with: `--load-model=*` (every model in
/// explicit mode), `--log-verbose=N`, `--allow-client-shm=BOOL` (false: registering and
/// unregistering shared memory answer Triton's 501).
#[test]
fn tritons_start_flags_load_every_model_and_gate_shared_memory() {
    let host = Host::new();
    let dir = tempfile::tempdir().expect("dir");
    for name in ["one", "two"] {
        put_onnx(dir.path(), name, site().join("onnx/backend/test/data/node/test_add/model.onnx"));
    }
    let flags = ["--model-control-mode=explicit", "--load-model=*", "--log-verbose=1", "--allow-client-shm=false"];
    let server = Server::start(&host, dir.path(), &flags);
    server.wait_ready();
    let (_, index) = http(&server.http, "POST", "/v2/repository/index", b"");
    let index: serde_json::Value = serde_json::from_str(&index).expect("JSON");
    let ready: Vec<&str> = index
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["state"] == "READY")
        .map(|e| e["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(ready, ["one", "two"], "{index}");
    let register = br#"{"key": "/k", "offset": 0, "byte_size": 8}"#;
    for path in [
        "/v2/systemsharedmemory/region/r/register",
        "/v2/systemsharedmemory/unregister",
        "/v2/cudasharedmemory/region/r/register",
    ] {
        let (status, body) = http(&server.http, "POST", path, register);
        assert_eq!(
            (status, body.as_str()),
            (
                501,
                r#"{"error":"Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."}"#
            ),
            "{path}"
        );
    }
    let (status, _) = http(&server.http, "GET", "/v2/systemsharedmemory/status", b"");
    assert_eq!(status, 200, "the status stays open, as in Triton");
    // Without it serve logs warnings only; with it, each model's start is logged.
    assert!(server.stderr_text().contains("serving"), "--log-verbose logs details:\n{}", server.stderr_text());
}

/// The answers Triton's own QA tests check, asked of corral the way they ask them
/// (`serve_wording.py`, models from `wording_models.py`): classification of a row past a
/// million elements, raw and JSON inputs past the size limit, shapes whose bytes overflow, a
/// deeply nested index body, BYTES counts naming the last input, model names, restricted
/// APIs, `triton_` parameters, optional inputs, shared-memory registration and offsets, and
/// a full dynamic-batching queue.
#[test]
fn tritons_words_where_its_own_tests_check_them() {
    let host = Host::new();
    let dir = tempfile::tempdir().expect("dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/wording_models.py");
    let made = Command::new(python(".venv")).arg(script).arg(dir.path()).output().expect("python");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let flags = [
        "--model-control-mode=explicit",
        "--load-model=*",
        "--http-max-input-size=8388608",
        "--http-restricted-api=model-repository:admin-key=admin-value",
        "--grpc-restricted-protocol=statistics:infer-key=infer-value",
    ];
    let server = Server::start(&host, dir.path(), &flags);
    server.wait_ready();
    let ports = [Server::port(&server.http), Server::port(&server.grpc)];
    server.run_client("serve_wording.py", &ports, "all checks passed");
}
