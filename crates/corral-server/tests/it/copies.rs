//! How many times a 602 KB tensor is copied on its way through the server: a counting global
//! allocator counts, on the server's threads (this process: tokio's and corral's workers),
//! every allocation or growth of at least the tensor's size while one call runs, and
//! tritonclient (another process, so none of its own copies count; sync and asyncio clients)
//! makes the call and checks the answer against onnxruntime's own run of the model.
//!
//! The model is a convolution with random weights (3 to 3 channels, 3x3, padded, then a
//! ReLU), so its 1x3x224x224 FP32 output is as big as its input and every element depends
//! on real arithmetic. Copies made inside ONNX Runtime use its own allocator and are not
//! counted: the count is corral's.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    },
};

/// The input's (and output's) size: 1x3x224x224 FP32.
const TENSOR_BYTES: usize = 3 * 224 * 224 * 4;

/// Counts tensor-sized allocations while armed: this test binary's allocator.
pub struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static BIG: AtomicUsize = AtomicUsize::new(0);
/// The sizes of the first counted allocations of a call, shown when a count is wrong.
static SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

thread_local! {
    /// This test's own thread, which only drives the client.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if size >= TENSOR_BYTES && ARMED.load(Relaxed) && !EXCLUDED.try_with(Cell::get).unwrap_or(true) {
        let n = BIG.fetch_add(1, Relaxed);
        if let Some(slot) = SIZES.get(n) {
            slot.store(size, Relaxed);
        }
    }
}

// SAFETY: every call is the system allocator's, with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as the caller promised for this call.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as the caller promised for this call.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised for this call.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            note(new_size);
        }
        // SAFETY: as the caller promised for this call.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's Python (onnx, to make the model) or the clients' (tritonclient, onnxruntime).
fn python(venv: &str) -> PathBuf {
    let python = root().join(venv).join("bin/python");
    assert!(python.exists(), "{} is missing: run ./scripts/setup --tests first", python.display());
    python
}

/// Writes the model (and a batching copy of it) into a repository.
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    for name in ["conv", "convb"] {
        std::fs::create_dir_all(repo.join(name).join("1")).expect("model folder");
    }
    let model = repo.join("conv/1/model.onnx");
    let made = Command::new(python(".venv")).args(["-c", MAKE_MODEL]).arg(&model).status().expect("python runs");
    assert!(made.success(), "making the model failed");
    std::fs::copy(&model, repo.join("convb/1/model.onnx")).expect("copy the model");
    std::fs::write(
        repo.join("convb/config.pbtxt"),
        r#"name: "convb"
platform: "onnxruntime_onnx"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"#,
    )
    .expect("config");
    repo
}

const MAKE_MODEL: &str = r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
rng = np.random.default_rng(7)
w = numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
graph = helper.make_graph(
    [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
    "conv",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [w, b],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
"#;

/// The client: reads a case name per line, makes that call (checking the answer against
/// onnxruntime's), and answers `ok` (or fails).
const CLIENT: &str = r#"
import asyncio, sys, numpy as np, onnxruntime as ort
import tritonclient.http as http, tritonclient.grpc as grpc
import tritonclient.http.aio as ahttp, tritonclient.grpc.aio as agrpc
from tritonclient.grpc import service_pb2
import tritonclient.utils.shared_memory as shm
model, http_url, grpc_url = sys.argv[1:4]
x = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)
expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
h = http.InferenceServerClient(http_url, concurrency=2)
g = grpc.InferenceServerClient(grpc_url)
def check(y, what):
    assert y.shape == expected.shape, (what, y.shape)
    assert np.allclose(y, expected, rtol=1e-5, atol=1e-5), (what, float(np.abs(y - expected).max()))
def rest(binary, name="conv"):
    i = http.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=binary)
    o = http.InferRequestedOutput("y", binary_data=binary)
    return h.infer(name, [i], outputs=[o]).as_numpy("y")
def grpc_raw(request_id):
    i = grpc.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x)
    return g.infer("conv", [i], request_id=request_id).as_numpy("y")
def grpc_typed():
    request = service_pb2.ModelInferRequest(model_name="conv")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = g._client_stub.ModelInfer(request)
    return np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(expected.shape)
size = x.nbytes
region_in = shm.create_shared_memory_region("copies_in", "/corral_copies_in", size)
region_out = shm.create_shared_memory_region("copies_out", "/corral_copies_out", size)
shm.set_shared_memory_region(region_in, [x])
h.unregister_system_shared_memory()
h.register_system_shared_memory("copies_in", "/corral_copies_in", size)
h.register_system_shared_memory("copies_out", "/corral_copies_out", size)
def rest_shm():
    i = http.InferInput("x", list(x.shape), "FP32"); i.set_shared_memory("copies_in", size)
    o = http.InferRequestedOutput("y"); o.set_shared_memory("copies_out", size)
    h.infer("conv", [i], outputs=[o])
    return shm.get_contents_as_numpy(region_out, np.float32, list(expected.shape))
def batched():
    i = http.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=True)
    o = http.InferRequestedOutput("y", binary_data=True)
    calls = [h.async_infer("convb", [i], outputs=[o]) for _ in range(2)]
    answers = [c.get_result().as_numpy("y") for c in calls]
    check(answers[1], "batched")
    return answers[0]
def aio(module, url):
    async def call():
        client = module.InferenceServerClient(url)
        try:
            binary = {"binary_data": True} if module is ahttp else {}
            i = module.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x, **binary)
            o = module.InferRequestedOutput("y", **binary)
            return (await client.infer("conv", [i], outputs=[o])).as_numpy("y")
        finally:
            await client.close()
    return asyncio.run(call())
cases = {
    "rest_aio": lambda: aio(ahttp, http_url), "grpc_aio": lambda: aio(agrpc, grpc_url),
    "rest_binary": lambda: rest(True), "rest_json": lambda: rest(False),
    "grpc_typed": grpc_typed, "shm": rest_shm, "batched": batched,
}
for k in range(1, 5):
    cases[f"grpc_raw_{k}"] = lambda k=k: grpc_raw("i" * k)
print("ready", flush=True)
try:
    for line in sys.stdin:
        case = line.strip()
        check(cases[case](), case)
        print("ok", flush=True)
finally:
    h.unregister_system_shared_memory()
    for region in (region_in, region_out):
        shm.destroy_shared_memory_region(region)
"#;

/// Runs the in-process server, then each case twice through the client (the second time
/// counted), and returns each case's count.
fn counts(cases: &[&str]) -> Vec<(String, usize, Vec<usize>)> {
    EXCLUDED.with(|e| e.set(true));
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = repository(dir.path());
    let engine = corral_engine_ort::OrtEngine::load(|name| std::env::var(name).ok())
        .expect("ONNX Runtime loads (./scripts/setup --tests installs it)");
    let settings = corral_runtime::RuntimeSettings {
        take: corral_cores::TakeSettings {
            device: Some("cpu".parse().expect("the cpu device")),
            lock_dir: Some(dir.path().join("locks")),
            ..Default::default()
        },
        onnx_engine: Some(Arc::new(engine)),
        publish: false,
        ..Default::default()
    };
    let runtime = corral_runtime::Runtime::new(settings).expect("cores for the server");
    let options = corral_server::ServeOptions {
        repository: repo.clone(),
        host: "127.0.0.1".parse().expect("loopback"),
        http_port: 0,
        grpc_port: 0,
        metrics_port: 0,
        control: corral_server::ControlMode::None,
        load_models: Vec::new(),
        body_limit: corral_server::BODY_LIMIT_DEFAULT,
        grpc_limit: corral_server::BODY_LIMIT_DEFAULT,
        trace_file: None,
        trace: Default::default(),
        strict_readiness: true,
        exit_on_error: false,
        allow_client_shm: true,
        http_restricted: Default::default(),
        grpc_restricted: Default::default(),
    };
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        tokio.block_on(corral_server::serve(runtime, options, move |b| bound_tx.send(b).expect("test waits"), async {
            let _ = stop_rx.await;
        }))
    });
    let bound = bound_rx.recv().expect("the server binds");
    let mut client = Command::new(python(".venv-clients"))
        .args(["-c", CLIENT])
        .arg(repo.join("conv/1/model.onnx"))
        .arg(bound.http.to_string())
        .arg(bound.grpc.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the client starts");
    let mut to_client = client.stdin.take().expect("stdin");
    let mut from_client = BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut read = |line: &mut String| {
        line.clear();
        from_client.read_line(line).expect("the client answers");
        line.trim().to_owned()
    };
    // The server is live at once and ready once its models are loaded.
    let ready_url = format!("http://{}/v2/health/ready", bound.http);
    let mut waited = 0;
    while !ready(&ready_url) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
        assert!(waited < 1200, "the models did not load within a minute");
    }
    assert_eq!(read(&mut line), "ready", "the client starts");
    let mut counts = Vec::new();
    for case in cases {
        for counted in [false, true] {
            BIG.store(0, Relaxed);
            ARMED.store(counted, Relaxed);
            writeln!(to_client, "{case}").expect("to the client");
            let answer = read(&mut line);
            ARMED.store(false, Relaxed);
            assert_eq!(answer, "ok", "case {case}: the client failed (its error is above)");
        }
        let n = BIG.load(Relaxed);
        let sizes = SIZES.iter().take(n).map(|s| s.load(Relaxed)).collect();
        counts.push((case.to_string(), n, sizes));
    }
    drop(to_client);
    assert!(client.wait().expect("the client ends").success());
    let _ = stop_tx.send(());
    server.join().expect("the server thread").expect("the server stops cleanly");
    counts
}

/// A GET answered 200.
fn ready(url: &str) -> bool {
    let address = url.trim_start_matches("http://").split('/').next().expect("host:port");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    let path = &url[url.find("/v2").expect("a path")..];
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Whether an allocation of `size` bytes holds copies of the tensor: one or two tensors'
/// bytes (a batch of two) and the message around them (under 64 KiB). The protocol stacks'
/// own receive buffers (hyper's, tonic's), grown by doubling as bytes arrive, and JSON text
/// are other sizes.
fn is_copy(size: usize) -> bool {
    (1..=2).any(|n| (n * TENSOR_BYTES..n * TENSOR_BYTES + (64 << 10)).contains(&size))
}

#[test]
fn a_602_kb_tensor_is_copied_at_most_once_each_way_on_every_path() {
    let cases = [
        "rest_binary",
        "rest_aio",
        "rest_json",
        "grpc_raw_1",
        "grpc_raw_2",
        "grpc_raw_3",
        "grpc_raw_4",
        "grpc_aio",
        "grpc_typed",
        "shm",
        "batched",
    ];
    let counts = counts(&cases);
    let shown: Vec<String> = counts.iter().map(|(case, n, sizes)| format!("{case} {n} {sizes:?}")).collect();
    let shown = shown.join(", ");
    // (copies of the tensor, other tensor-sized allocations) of a case.
    let count = |case: &str| {
        let (_, n, sizes) = counts.iter().find(|(c, ..)| c == case).expect("counted");
        assert!(*n <= SIZES.len(), "{case}: more allocations than recorded: {shown}");
        let copies = sizes.iter().filter(|&&size| is_copy(size)).count();
        (copies, n - copies)
    };
    // REST binary: the body collected once (tensors aligned in it, read in place); the answer
    // is its JSON header and then ONNX Runtime's own output buffer, written to the socket.
    // hyper's receive buffer may grow past the tensor's size once. The asyncio client asks
    // for gzip (aiohttp's default): the answer's frames are compressed where they are.
    for case in ["rest_binary", "rest_aio"] {
        let (copies, others) = count(case);
        assert!(copies == 1 && others <= 1, "{case}: {shown}");
    }
    // JSON: the numbers read straight from the text into the tensor; besides them, the text
    // received, the answer's text (written once into a buffer sized for it), hyper's buffer.
    let (copies, others) = count("rest_json");
    assert!(copies == 1 && others <= 3, "{shown}");
    // gRPC raw: tonic's message buffer; the input read in place where it is aligned, else
    // copied once; the answer encoded once into a buffer of its size. The request id moves
    // the raw bytes through every alignment (ids of 1 to 4 bytes): one is read in place.
    let raw: Vec<(usize, usize)> = (1..5).map(|k| count(&format!("grpc_raw_{k}"))).collect();
    assert!(raw.iter().all(|&(copies, others)| (1..=2).contains(&copies) && others == 1), "{shown}");
    assert!(raw.iter().any(|&(copies, _)| copies == 1), "no alignment was read in place: {shown}");
    let (copies, others) = count("grpc_aio");
    assert!((1..=2).contains(&copies) && others == 1, "{shown}");
    // gRPC typed: tonic's message buffer and prost's list of floats, moved (not cloned) into
    // the tensor; the answer once.
    let (copies, others) = count("grpc_typed");
    assert!(copies == 1 && others <= 2, "{shown}");
    // Shared memory: read once into a buffer the tensor reads in place; the output written
    // into the region from ONNX Runtime's buffer; no tensor in either message.
    assert_eq!(count("shm"), (1, 0), "{shown}");
    // Two calls batched: each body once, the batch's input once; each call's answer is a
    // view of the batch's output.
    let (copies, others) = count("batched");
    assert!(copies == 3 && others <= 2, "{shown}");
}
