//! How many times a tensor is copied on its way through the server, found by what the
//! copies hold, not by their sizes: a counting global allocator records, on the server's
//! threads (this process: tokio's and corral's workers), every allocation made while one
//! call runs, and when each is freed (or at the end), reads it and counts how much of the
//! call's input and of its output it holds. A body collected into a doubling buffer, a batch
//! gathered into one buffer, BYTES elements each in a buffer of their own: each counts for
//! what it holds. tritonclient (another process, so none of its own copies count; sync and
//! asyncio clients) makes the calls and checks each answer against onnxruntime's own run.
//!
//! The tensors say what they are: the FP32 input (1x3x224x224, 602 KB) holds 1 + i/2^23 at
//! element i, so each of its words has the sign and exponent bits of [1, 2); the model adds
//! 1, so each output word has those of [2, 4): a word's top 9 bits tell input, output or
//! neither, and text (JSON, headers) never has them. The BYTES input is 1176 lower-case
//! strings of 512 letters (602 KB with their lengths); its model upper-cases them
//! (StringNormalizer): lower-case letters are the input's, capitals the output's.
//! Copies made inside ONNX Runtime use its own allocator and are not counted: the count is
//! corral's (and the protocol stacks' receive buffers, which hold the bytes as they arrive).
//! Python models' stubs are processes of their own: what the server copies in and out of
//! their shared buffers counts, their own copies do not.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

/// The FP32 tensors' elements (1x3x224x224).
const ELEMENTS: usize = 3 * 224 * 224;
/// The BYTES input: this many strings of [`STRING`] letters.
const STRINGS: usize = 1176;
const STRING: usize = 512;

/// Records allocations while a case runs: this test binary's allocator.
pub struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

/// The case being counted (its index + 1), 0 when none.
static CASE: AtomicUsize = AtomicUsize::new(0);
/// Cases whose tensors are BYTES (counted by letters, not by words), one bit each.
static BYTES_CASES: AtomicUsize = AtomicUsize::new(0);
const CASES: usize = 16;
/// Per case: whole copies of the input and of the output found, each in one buffer, and
/// BYTES elements found alone in a buffer of their own (input, output).
static WHOLE_IN: [AtomicUsize; CASES] = [const { AtomicUsize::new(0) }; CASES];
static WHOLE_OUT: [AtomicUsize; CASES] = [const { AtomicUsize::new(0) }; CASES];
static ALONE_IN: [AtomicUsize; CASES] = [const { AtomicUsize::new(0) }; CASES];
static ALONE_OUT: [AtomicUsize; CASES] = [const { AtomicUsize::new(0) }; CASES];
/// Per case, the first buffers that held any of either: (size, input, output), the parts as
/// thousandths of a tensor (pieces of one, as a connection receives it, included).
static SEEN: [[[AtomicUsize; 3]; 8]; CASES] = [const { [const { [const { AtomicUsize::new(0) }; 3] }; 8] }; CASES];
static SEEN_N: [AtomicUsize; CASES] = [const { AtomicUsize::new(0) }; CASES];

/// The allocations recorded and not yet read: address and (case, size), open addressing.
const SLOTS: usize = 1 << 16;
static ADDRESSES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static META: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// An address slot freed again (probing goes past it).
const GONE: usize = usize::MAX;
static RECORDED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This test's own thread, which only drives the client.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn slot_of(address: usize) -> usize {
    (address >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 16)
}

/// Records `address` (an allocation of `size`) for `case`.
fn record(address: usize, size: usize, case: usize) {
    let mut slot = slot_of(address);
    for _ in 0..SLOTS {
        if ADDRESSES[slot].compare_exchange(0, address, Relaxed, Relaxed).is_ok() {
            META[slot].store(case << 48 | size, Relaxed);
            RECORDED.fetch_add(1, Relaxed);
            return;
        }
        slot = (slot + 1) % SLOTS;
    }
    panic!("the allocation table is full");
}

/// Takes `address` out of the table: its (case, size) when it was recorded.
fn take(address: usize) -> Option<(usize, usize)> {
    if RECORDED.load(Relaxed) == 0 {
        return None;
    }
    let mut slot = slot_of(address);
    for _ in 0..SLOTS {
        match ADDRESSES[slot].load(Relaxed) {
            0 => return None,
            a if a == address => {
                let meta = META[slot].load(Relaxed);
                ADDRESSES[slot].store(GONE, Relaxed);
                return Some((meta >> 48, meta & ((1 << 48) - 1)));
            }
            _ => slot = (slot + 1) % SLOTS,
        }
    }
    None
}

/// FP32 element `i` of the input (1 + i/2^23), as the client makes it, and of the output.
fn input_word(i: usize) -> u32 {
    0x3F80_0000 | i as u32
}

fn output_word(i: usize) -> u32 {
    (f32::from_bits(input_word(i)) + 1.0).to_bits()
}

/// BYTES element `k` of the input (512 letters from the k-th), upper-cased for the output.
fn letter(k: usize, j: usize, upper: bool) -> u8 {
    let c = b'a' + ((j + k) % 26) as u8;
    if upper { c.to_ascii_uppercase() } else { c }
}

/// How many whole copies of a tensor `bytes` holds: runs of `len` bytes, each byte as `at`
/// says it should be, starting anywhere.
fn whole(bytes: &[u8], len: usize, at: impl Fn(usize) -> u8) -> usize {
    let (mut found, mut start) = (0, 0);
    while start + len <= bytes.len() {
        if (0..len).all(|n| bytes[start + n] == at(n)) {
            found += 1;
            start += len;
        } else {
            start += 1;
        }
    }
    found
}

/// The FP32 tensor's byte `n`.
fn fp32_byte(n: usize, output: bool) -> u8 {
    let word = if output { output_word(n / 4) } else { input_word(n / 4) };
    word.to_le_bytes()[n % 4]
}

/// The BYTES tensor's wire byte `n` (each element's 4-byte length, then its letters).
fn wire_byte(n: usize, output: bool) -> u8 {
    let (k, j) = (n / (4 + STRING), n % (4 + STRING));
    match j {
        0..4 => (STRING as u32).to_le_bytes()[j],
        _ => letter(k, j - 4, output),
    }
}

/// Counts what `bytes` (a buffer of `case`, about to be freed) holds of the case's tensors.
fn read(bytes: &[u8], case: usize) {
    let strings = BYTES_CASES.load(Relaxed) & (1 << case) != 0;
    // Pieces (as a connection's buffers hold them): words of each kind, letters of each case.
    let (part_in, part_out) = if strings {
        (
            bytes.iter().filter(|b| b.is_ascii_lowercase()).count(),
            bytes.iter().filter(|b| b.is_ascii_uppercase()).count(),
        )
    } else {
        let words = |top: u32| {
            (0..4)
                .map(|at| {
                    let aligned = bytes.get(at..).unwrap_or_default().chunks_exact(4);
                    aligned.filter(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) >> 23 == top).count()
                })
                .max()
                .unwrap_or(0)
        };
        (words(0x7f), words(0x80))
    };
    // A few by chance are nothing.
    if part_in + part_out < 256 {
        return;
    }
    let (whole_in, whole_out) = if strings {
        let len = STRINGS * (4 + STRING);
        // One element alone in its own buffer (any element: they repeat every 26).
        let alone = |upper: bool| {
            let k = bytes.first().map_or(0, |c| (c.to_ascii_lowercase().wrapping_sub(b'a')) as usize);
            bytes.len() < 2 * STRING && bytes.len() >= STRING && (0..STRING).all(|j| bytes[j] == letter(k, j, upper))
        };
        ALONE_IN[case].fetch_add(usize::from(alone(false)), Relaxed);
        ALONE_OUT[case].fetch_add(usize::from(alone(true)), Relaxed);
        (whole(bytes, len, |n| wire_byte(n, false)), whole(bytes, len, |n| wire_byte(n, true)))
    } else {
        (whole(bytes, 4 * ELEMENTS, |n| fp32_byte(n, false)), whole(bytes, 4 * ELEMENTS, |n| fp32_byte(n, true)))
    };
    WHOLE_IN[case].fetch_add(whole_in, Relaxed);
    WHOLE_OUT[case].fetch_add(whole_out, Relaxed);
    let n = SEEN_N[case].fetch_add(1, Relaxed);
    let per = if strings { STRINGS * STRING } else { ELEMENTS };
    if let Some(seen) = SEEN[case].get(n) {
        for (cell, value) in seen.iter().zip([bytes.len(), part_in * 1000 / per, part_out * 1000 / per]) {
            cell.store(value, Relaxed);
        }
    }
}

/// An allocation made while a case runs, on a server thread.
fn noted(ptr: *mut u8, size: usize) {
    let case = CASE.load(Relaxed);
    if case != 0 && size >= 64 && !ptr.is_null() && !EXCLUDED.try_with(Cell::get).unwrap_or(true) {
        record(ptr as usize, size, case - 1);
    }
}

// SAFETY: every call is the system allocator's, with the same arguments; the bookkeeping
// only reads a buffer before it is freed, and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for this call.
        let ptr = unsafe { System.alloc(layout) };
        noted(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for this call.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        noted(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some((case, size)) = take(ptr as usize) {
            // SAFETY: the allocation is still live and `size` long (the caller frees it next).
            read(unsafe { std::slice::from_raw_parts(ptr, size) }, case);
        }
        // SAFETY: as the caller promised for this call.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A buffer that grows keeps its case: its bytes move with it and are read when freed.
        let kept = take(ptr as usize);
        // SAFETY: as the caller promised for this call.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        match kept {
            Some((case, _)) if !new.is_null() => record(new as usize, new_size, case),
            Some((case, size)) => record(ptr as usize, size, case),
            None => noted(new, new_size),
        }
        new
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

/// Writes the models (and a batching copy of the FP32 one) into a repository.
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    for name in ["plus", "plusb", "upper"] {
        std::fs::create_dir_all(repo.join(name).join("1")).expect("model folder");
    }
    let made = Command::new(python(".venv"))
        .args(["-c", MAKE_MODELS])
        .arg(repo.join("plus/1/model.onnx"))
        .arg(repo.join("upper/1/model.onnx"))
        .status()
        .expect("python runs");
    assert!(made.success(), "making the models failed");
    std::fs::copy(repo.join("plus/1/model.onnx"), repo.join("plusb/1/model.onnx")).expect("copy the model");
    // Python models: plus in a model.py, and a model.py calling plus through BLS.
    for (name, code) in [("pyplus", PYPLUS), ("blsplus", BLSPLUS)] {
        std::fs::create_dir_all(repo.join(name).join("1")).expect("model folder");
        std::fs::write(repo.join(name).join("1/model.py"), code).expect("model.py");
        std::fs::write(
            repo.join(name).join("config.pbtxt"),
            r#"backend: "python"
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 3, 224, 224 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1, 3, 224, 224 ] } ]
"#,
        )
        .expect("config");
    }
    // A two-step ensemble: plus, then plus again on what the first step gave.
    std::fs::create_dir_all(repo.join("twice")).expect("ensemble folder");
    std::fs::write(
        repo.join("twice/config.pbtxt"),
        r#"platform: "ensemble"
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 3, 224, 224 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1, 3, 224, 224 ] } ]
ensemble_scheduling { step [
  { model_name: "plus" model_version: -1 input_map { key: "x" value: "x" } output_map { key: "y" value: "once" } },
  { model_name: "plus" model_version: -1 input_map { key: "x" value: "once" } output_map { key: "y" value: "y" } }
] }
"#,
    )
    .expect("ensemble config");
    std::fs::write(
        repo.join("plusb/config.pbtxt"),
        r#"name: "plusb"
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

const PYPLUS: &str = r#"
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy() + 1)])
                for r in requests]
"#;

const BLSPLUS: &str = r#"
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        answers = [pb_utils.InferenceRequest(model_name="plus", inputs=[pb_utils.get_input_tensor_by_name(r, "x")],
                                             requested_output_names=["y"]).exec() for r in requests]
        return [pb_utils.InferenceResponse(a.output_tensors(), error=a.error()) for a in answers]
"#;

const MAKE_MODELS: &str = r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
one = numpy_helper.from_array(np.ones(1, dtype=np.float32), "one")
graph = helper.make_graph(
    [helper.make_node("Add", ["x", "one"], ["y"])],
    "plus",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [one],
)
upper = helper.make_graph(
    [helper.make_node("StringNormalizer", ["s"], ["t"], case_change_action="UPPER", locale="C")],
    "upper",
    [helper.make_tensor_value_info("s", TensorProto.STRING, ["C"])],
    [helper.make_tensor_value_info("t", TensorProto.STRING, ["C"])],
)
for g, path in ((graph, sys.argv[1]), (upper, sys.argv[2])):
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
"#;

/// The client: reads a case name per line, makes that call (checking the answer against
/// onnxruntime's), and answers `ok` (or fails).
const CLIENT: &str = r#"
import asyncio, sys, numpy as np, onnxruntime as ort
import tritonclient.http as http, tritonclient.grpc as grpc
import tritonclient.http.aio as ahttp, tritonclient.grpc.aio as agrpc
from tritonclient.grpc import service_pb2
import tritonclient.utils.shared_memory as shm
plus, upper, http_url, grpc_url = sys.argv[1:5]
# Element i is 1 + i/2^23: every word of the input has the bits of [1, 2).
x = (np.arange(3 * 224 * 224, dtype=np.uint32) | np.uint32(0x3F800000)).view(np.float32).reshape(1, 3, 224, 224)
expected = ort.InferenceSession(plus, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
s = np.array([letters[(np.arange(512) + k) % 26].tobytes() for k in range(1176)], dtype=np.object_)
s_expected = [e.encode() if isinstance(e, str) else e for e in ort.InferenceSession(upper, providers=["CPUExecutionProvider"]).run(None, {"s": s.astype(str).astype(np.object_)})[0]]
assert s_expected == [t.upper() for t in s]
h = http.InferenceServerClient(http_url, concurrency=2)
g = grpc.InferenceServerClient(grpc_url)
twice = ort.InferenceSession(plus, providers=["CPUExecutionProvider"]).run(None, {"x": expected})[0]
def check(y, what):
    if y.dtype == np.object_:
        assert list(y) == s_expected, what
        return
    assert y.shape == expected.shape, (what, y.shape)
    want = twice if what == "ensemble" else expected
    assert np.array_equal(y, want), (what, float(np.abs(y - want).max()))
def rest(binary, name="plus"):
    i = http.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=binary)
    o = http.InferRequestedOutput("y", binary_data=binary)
    return h.infer(name, [i], outputs=[o]).as_numpy("y")
def grpc_raw(request_id, name="plus"):
    i = grpc.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x)
    return g.infer(name, [i], request_id=request_id).as_numpy("y")
def grpc_typed():
    request = service_pb2.ModelInferRequest(model_name="plus")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = g._client_stub.ModelInfer(request)
    return np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(expected.shape)
def bytes_rest():
    i = http.InferInput("s", [len(s)], "BYTES"); i.set_data_from_numpy(s, binary_data=True)
    return h.infer("upper", [i], outputs=[http.InferRequestedOutput("t", binary_data=True)]).as_numpy("t")
def bytes_grpc():
    i = grpc.InferInput("s", [len(s)], "BYTES"); i.set_data_from_numpy(s)
    return g.infer("upper", [i]).as_numpy("t")
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
    h.infer("plus", [i], outputs=[o])
    return shm.get_contents_as_numpy(region_out, np.float32, list(expected.shape))
def batched():
    i = http.InferInput("x", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=True)
    o = http.InferRequestedOutput("y", binary_data=True)
    calls = [h.async_infer("plusb", [i], outputs=[o]) for _ in range(2)]
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
            return (await client.infer("plus", [i], outputs=[o])).as_numpy("y")
        finally:
            await client.close()
    return asyncio.run(call())
cases = {
    "rest_aio": lambda: aio(ahttp, http_url), "grpc_aio": lambda: aio(agrpc, grpc_url),
    "rest_binary": lambda: rest(True), "rest_json": lambda: rest(False),
    "grpc_typed": grpc_typed, "shm": rest_shm, "batched": batched,
    "bytes_rest": bytes_rest, "bytes_grpc": bytes_grpc, "ensemble": lambda: grpc_raw("i", "twice"),
    "python": lambda: rest(True, "pyplus"), "bls": lambda: rest(True, "blsplus"),
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

/// What one case's call left in corral's buffers: whole copies of its input and of its
/// output (a BYTES tensor's elements each alone in a buffer count as one copy together),
/// and the buffers that held any part of either.
#[derive(Debug)]
struct Copies {
    case: String,
    input: usize,
    output: usize,
    /// (size, input, output) of the first buffers, in tensors' worth, for the message.
    buffers: Vec<(usize, f64, f64)>,
}

/// Runs the in-process server, then each case twice through the client (the second time
/// counted), stops the server (every buffer a call made is then read), and returns each
/// case's copies.
fn counts(cases: &[&str]) -> Vec<Copies> {
    EXCLUDED.with(|e| e.set(true));
    assert!(cases.len() <= CASES);
    for (i, case) in cases.iter().enumerate() {
        if case.starts_with("bytes_") {
            BYTES_CASES.fetch_or(1 << i, Relaxed);
        }
    }
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
        python_engine: Some(Arc::new(corral_engine_python::PythonEngine::from_env(|name| {
            (name == "CORRAL_PYTHON").then(|| python(".venv").to_string_lossy().into_owned())
        }))),
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
        dashboard: false,
        auto_complete: true,
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
        .arg(repo.join("plus/1/model.onnx"))
        .arg(repo.join("upper/1/model.onnx"))
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
    for (i, case) in cases.iter().enumerate() {
        for counted in [false, true] {
            CASE.store(if counted { i + 1 } else { 0 }, Relaxed);
            writeln!(to_client, "{case}").expect("to the client");
            let answer = read(&mut line);
            CASE.store(0, Relaxed);
            assert_eq!(answer, "ok", "case {case}: the client failed (its error is above)");
        }
    }
    drop(to_client);
    assert!(client.wait().expect("the client ends").success());
    let _ = stop_tx.send(());
    server.join().expect("the server thread").expect("the server stops cleanly");
    cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let n = SEEN_N[i].load(Relaxed).min(SEEN[i].len());
            let part = |cell: &AtomicUsize| cell.load(Relaxed) as f64 / 1000.0;
            let buffers = SEEN[i][..n].iter().map(|b| (b[0].load(Relaxed), part(&b[1]), part(&b[2]))).collect();
            let alone = |found: &AtomicUsize| found.load(Relaxed).div_ceil(STRINGS);
            Copies {
                case: case.to_string(),
                input: WHOLE_IN[i].load(Relaxed) + alone(&ALONE_IN[i]),
                output: WHOLE_OUT[i].load(Relaxed) + alone(&ALONE_OUT[i]),
                buffers,
            }
        })
        .collect()
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
        "bytes_rest",
        "bytes_grpc",
        "ensemble",
        "python",
        "bls",
    ];
    let counts = counts(&cases);
    let shown: Vec<String> = counts
        .iter()
        .map(|c| {
            let buffers: Vec<String> =
                c.buffers.iter().map(|(size, i, o)| format!("{size} B: in {i:.2} out {o:.2}")).collect();
            format!("{}: in {}, out {} [{}]", c.case, c.input, c.output, buffers.join("; "))
        })
        .collect();
    let shown = shown.join("\n");
    eprintln!("{shown}");
    let count = |case: &str| {
        let c = counts.iter().find(|c| c.case == case).expect("counted");
        (c.input, c.output)
    };
    // A connection's buffers (hyper's, h2's) hold the bytes in pieces as they arrive: not a
    // copy of the tensor, which is where the bytes are first whole.
    // REST binary: the body collected once (tensors aligned in it, read in place); the answer
    // is its JSON header and then ONNX Runtime's own output buffer, written to the socket
    // where it is. The asyncio client asks for gzip (aiohttp's default): the answer's frames
    // are compressed where they are.
    for case in ["rest_binary", "rest_aio"] {
        assert_eq!(count(case), (1, 0), "{case}:\n{shown}");
    }
    // JSON: the numbers read straight from the text into the tensor; the answer is text.
    assert_eq!(count("rest_json"), (1, 0), "{shown}");
    // gRPC raw: tonic's message buffer, the input read there in place where it is aligned,
    // else copied once; the answer encoded once into a buffer of its size. The request id
    // moves the raw bytes through every alignment (ids of 1 to 4 bytes): one is read in place.
    let raw: Vec<(usize, usize)> = (1..5).map(|k| count(&format!("grpc_raw_{k}"))).collect();
    assert!(raw.iter().all(|&(input, output)| (1..=2).contains(&input) && output == 1), "{shown}");
    assert!(raw.iter().any(|&(input, _)| input == 1), "no alignment was read in place:\n{shown}");
    let (input, output) = count("grpc_aio");
    assert!((1..=2).contains(&input) && output == 1, "{shown}");
    // gRPC typed: tonic's message buffer, and prost's list of floats decoded from it (a
    // buffer that grows by doubling), moved, not cloned, into the tensor; the answer once.
    assert_eq!(count("grpc_typed"), (2, 1), "{shown}");
    // Shared memory: read once into a buffer the tensor reads in place; the output written
    // into the region from ONNX Runtime's buffer; no tensor in either message.
    assert_eq!(count("shm"), (1, 0), "{shown}");
    // Two calls batched: each body's tensor read straight into its place in the batch's one
    // buffer, which the model reads in place: two copies for two calls. Each call's answer is
    // a view of the batch's output.
    assert_eq!(count("batched"), (2, 0), "two calls: {shown}");
    // BYTES: the elements read where they arrived (the body, the message) and copied from
    // there into ONNX Runtime's strings (not counted here), and out of them once, into their
    // wire form, which REST sends where it is and gRPC encodes once more into its message.
    assert_eq!(count("bytes_rest"), (1, 1), "{shown}");
    assert_eq!(count("bytes_grpc"), (1, 2), "{shown}");
    // A two-step ensemble over gRPC: the input as one call of its model; the first step's
    // output (x + 1, which the count recognises whole) handed to the second where ONNX Runtime
    // left it, never copied; the answer (x + 2, recognised by its words) encoded once.
    let (input, intermediate) = count("ensemble");
    assert!((1..=2).contains(&input) && intermediate == 0, "{shown}");
    let ensemble = counts.iter().find(|c| c.case == "ensemble").expect("counted");
    let answers = ensemble.buffers.iter().filter(|(_, _, out)| *out >= 0.99).count();
    assert_eq!(answers, 1, "one buffer holds the whole answer:\n{shown}");
    // A Python model over REST binary: the body collected once, the input written from it
    // into the stub's shared buffer (a mapping, no buffer of the server's); the stub's answer
    // copied out of the buffer once (the one copy each way across the process boundary) and
    // sent where it is. The stub's own copies are in another process.
    assert_eq!(count("python"), (1, 1), "{shown}");
    // A Python model calling plus through BLS: the call's input is the execute's own input,
    // named where it lies in the shared buffer and copied out of it once for plus; plus's
    // answer goes to the stub from ONNX Runtime's buffer where it is; the model's answer
    // copied out once: one copy each way per call, the outer and the inner one.
    assert_eq!(count("bls"), (2, 1), "{shown}");
}
