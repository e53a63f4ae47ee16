"""Triton Python models through `corral serve`, as tritonclient calls them: add_sub (no
configuration: its backend from the file name, its signature from auto_complete_config) over
HTTP and gRPC, sync and asyncio; `where` (config.pbtxt, two instances), whose answers show two stubs, each
pinned inside the server's cores; a stub silent past its execute timeout and one that dies
mid-call, both started again while another model answers; two models whose load failed, the repository index
naming the file and line and the error's last line; BLS (`bls_calls`, `bls`, `selfcall`); the
decoupled model `waiter` over gRPC's stream; `batched` (several requests per execute);
`envpy` (EXECUTION_ENV_PATH); ensembles (`classify`, `lost`); and model control from a model
(`control`, the server in explicit mode with every model loaded); an ensemble with a decoupled
step (`wait_square`).

usage: serve_python.py HTTP_PORT GRPC_PORT METRICS_PORT SERVER_CPUS OUT_PIDS_FILE
"""

import asyncio
import json
import queue
import sys
import tempfile
import threading
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio
import tritonclient.http.aio as thttp_aio
import tritonclient.http as thttp
import tritonclient.utils as tritonclient_errors

http_port, grpc_port, metrics_port, server_cpus, pids_file = sys.argv[1:6]
HTTP = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
GRPC = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")

a = np.arange(4, dtype=np.float32)
b = np.full(4, 0.25, dtype=np.float32)
for client, module in ((HTTP, thttp), (GRPC, tgrpc)):
    inputs = [module.InferInput("INPUT0", [4], "FP32"), module.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


async def aio_calls():
    # The asyncio clients too, each with several calls in flight.
    for make, module in ((lambda: thttp_aio.InferenceServerClient(f"127.0.0.1:{http_port}"), thttp),
                         (lambda: tgrpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}"), tgrpc)):
        client = make()
        try:
            inputs = [module.InferInput("INPUT0", [4], "FP32"), module.InferInput("INPUT1", [4], "FP32")]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            for result in await asyncio.gather(*(client.infer("add_sub", inputs) for _ in range(4))):
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        finally:
            await client.close()


asyncio.run(aio_calls())
metadata = HTTP.get_model_metadata("add_sub")
assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1"], metadata
config = HTTP.get_model_config("add_sub")
assert config["backend"] == "python", config

# Two instances, two stubs, each inside the server's cores.
seen = {}
lock = threading.Lock()


def caller(first):
    client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
    for i in range(40):
        given = np.array([first, i], dtype=np.float32)  # each call its own: a stale answer shows
        x = thttp.InferInput("X", [2], "FP32")
        x.set_data_from_numpy(given)
        result = client.infer("where", [x])
        np.testing.assert_array_equal(result.as_numpy("Y"), given * 3)
        np.testing.assert_array_equal(result.as_numpy("SAME"), given)
        with lock:
            seen[int(result.as_numpy("PID")[0])] = result.as_numpy("CPUS")[0].decode()


threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(seen) == 2, f"calls reached {len(seen)} stubs: {seen}"
# where's custom metric: one series that both instances add to, on the metrics port.
metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
for line in ("# HELP where_requests_total Requests where answered", "# TYPE where_requests_total counter",
             'where_requests_total{model="where",version="1"} 160'):
    assert line in metrics.splitlines(), f"{line!r} not in the metrics:\n{metrics[-2000:]}"


def cpus(text):
    found = set()
    for part in text.replace(";", ",").split(","):
        lo, _, hi = part.partition("-")
        found.update(range(int(lo), int(hi or lo) + 1))
    return found


allowed = cpus(server_cpus)
for pid, lists in seen.items():
    assert cpus(lists) <= allowed, f"stub {pid} may run on {lists}, outside the server's {server_cpus}"
first, second = (cpus(lists) for lists in seen.values())
assert not first & second, f"two instances, two cores: the stubs share CPUs {seen}"
with open(pids_file, "w") as f:
    json.dump(sorted(seen), f)

# Failed loads: Triton's index says why, with file:line.
request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/index", data=b"{}", method="POST")
index = {m["name"]: m for m in json.load(urllib.request.urlopen(request))}
syntax = index["syntax"]
assert syntax["state"] == "UNAVAILABLE" and "model.py:5" in syntax["reason"] and "SyntaxError" in syntax["reason"], syntax
raises = index["raises"]
assert "model.py:3" in raises["reason"] and "RuntimeError: the weights file is missing" in raises["reason"], raises
# A stub silent past its execute timeout, and one that dies mid-call: the call fails naming
# model, instance and cause, the next call finds the stub started again, and another model
# answers throughout.
def one(model, value):
    x = thttp.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([value], dtype=np.float32))
    return HTTP.infer(model, [x]).as_numpy("Y")


stop = threading.Event()
answered = [0]


def others():
    client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
    inputs = [thttp.InferInput("INPUT0", [4], "FP32"), thttp.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    while not stop.is_set():
        np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("OUTPUT0"), a + b)
        answered[0] += 1


background = threading.Thread(target=others, daemon=True)
background.start()
for model, says in (("hang", "model 'hang' instance hang_0: execute did not return within 2.0 s"),
                    ("crash", "model 'crash' instance crash_0: its Python stub")):
    np.testing.assert_array_equal(one(model, 1.0), [2.0])
    try:
        one(model, -1.0)
        raise AssertionError(f"{model}: the call succeeded")
    except tritonclient_errors.InferenceServerException as e:
        assert says in str(e), str(e)
        if model == "crash":
            assert "exit status: 3" in str(e), str(e)
    # Its one stub starts again at once, in the background (an interpreter and numpy take far
    # longer than this question): the model is not ready meanwhile, and is once it is back.
    assert not HTTP.is_model_ready(model), f"{model} is ready while its only stub starts again"
    np.testing.assert_array_equal(one(model, 5.0), [6.0])
    assert HTTP.is_model_ready(model) and GRPC.is_model_ready(model), model
stop.set()
background.join()
assert answered[0] > 0, "add_sub answered while the others' stubs died"

# BLS: a Python model calling the ONNX model `add` and the Python model `add_sub`.
x = np.random.default_rng(7).random((3, 4, 5), dtype=np.float32)
for client, module in ((HTTP, thttp), (GRPC, tgrpc)):
    given = module.InferInput("X", [3, 4, 5], "FP32")
    given.set_data_from_numpy(x)
    report = json.loads(client.infer("bls_calls", [given]).as_numpy("REPORT")[0])
    assert report["onnx"] and report["python"], report
    assert report["decoupled"] == [1], report  # one response, final, from a model that is not decoupled
    assert report["async"] == 64, report
    not_ready = "Failed for execute the inference request. Model 'nowhere' is not ready."
    assert report["missing"] == {"message": f"Model nowhere - Error when running inference: {not_ready}", "code": 1}, report
    assert report["wrong_input"]["code"] == 1, report
    assert report["wrong_input"]["message"] == (
        "Model add - Error when running inference: [request id: <id_unknown>] "
        "inference input 'x' data-type is 'FP64', but model 'add' expects 'FP32'"), report
    assert "Model 'add' is not ready" in report["version"]["message"], report
    assert report["streamed"] == [[[5]], [[6]], []], report  # the empty final response too
    assert report["not_decoupled"] == {"code": 1, "message": (
        "Model waiter - Error when running inference: Model waiter is using the decoupled. The current BLS "
        "request call doesn't support models using the decoupled transaction policy. Please use "
        "'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled models.'")}, report
inputs = [thttp.InferInput("INPUT0", [4], "FP32"), thttp.InferInput("INPUT1", [4], "FP32")]
inputs[0].set_data_from_numpy(a)
inputs[1].set_data_from_numpy(b)
np.testing.assert_array_equal(HTTP.infer("bls", inputs).as_numpy("OUTPUT0"), (a + b) * 2)
# add's statistics count the calls made through BLS (BLS reaches it through the runtime).
stats = HTTP.get_inference_statistics("add")["model_stats"][0]["inference_stats"]
assert int(stats["success"]["count"]) == 2 * (1 + 1 + 64 + 0), stats
# A model calling itself with one instance: the inner call cannot start, and fails with the
# exec timeout (3 s here) in its response instead of waiting forever for itself.
given = thttp.InferInput("X", [1], "FP32")
given.set_data_from_numpy(np.ones(1, dtype=np.float32))
said = HTTP.infer("selfcall", [given]).as_numpy("ERROR")[0].decode()
assert said.startswith("4: ") and "could not start within 3 s" in said, said

# Dynamic batching: five calls at once reach one execute as requests of their own, each with
# its own rows (1, 2, 1, 3, and 2 whose negative input the model answers with an error), and
# each gets its own answer back: the error fails that call alone.
batch_client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}", concurrency=5)
pending = []
for rows, value in ((1, 1), (2, 2), (2, -1), (1, 1), (3, 3)):
    given = thttp.InferInput("X", [rows, 2], "FP32")
    given.set_data_from_numpy(np.full((rows, 2), value, dtype=np.float32))
    pending.append((rows, value, batch_client.async_infer("batched", [given])))
counts = []
for rows, value, call in pending:
    if value < 0:
        try:
            call.get_result()
            raise AssertionError("a negative input was answered")
        except tritonclient_errors.InferenceServerException as e:
            assert "negative input" in str(e), str(e)
        continue
    result = call.get_result()
    np.testing.assert_array_equal(result.as_numpy("Y"), np.full((rows, 2), 2 * value, dtype=np.float32))
    counts.append(int(result.as_numpy("REQUESTS")[0, 0]))
assert max(counts) > 2, f"no execute got the failing request with others: {counts}"

# EXECUTION_ENV_PATH: envpy's stub runs its environment's Python, with its bin first on PATH.
given = thttp.InferInput("X", [1], "FP32")
given.set_data_from_numpy(np.zeros(1, dtype=np.float32))
exe, path_head = HTTP.infer("envpy", [given]).as_numpy("EXE")[0].decode().split("|")
assert exe.endswith("/envpy/env/bin/python3") or exe.endswith("/envpy/env/bin/python"), exe
assert path_head.endswith("/envpy/env/bin"), path_head

# A decoupled model over gRPC's stream: two requests, each answered as its model sends; each
# holds its second response until the test, having received both first ones, creates a file.
received = queue.Queue()
GRPC.start_stream(callback=lambda result, error: received.put((result, error)))
folder = tempfile.mkdtemp()


def waiter_inputs(module, values, path):
    given = [module.InferInput("IN", [len(values)], "INT32"), module.InferInput("FILE", [1], "BYTES")]
    given[0].set_data_from_numpy(np.array(values, dtype=np.int32))
    given[1].set_data_from_numpy(np.array([path.encode()], dtype=np.object_))
    return given


GRPC.async_stream_infer("waiter", waiter_inputs(tgrpc, [1, 2], f"{folder}/a"), request_id="A")
GRPC.async_stream_infer("waiter", waiter_inputs(tgrpc, [10, 20], f"{folder}/b"), request_id="B",
                        enable_empty_final_response=True)


def next_response():
    result, error = received.get(timeout=30)
    assert error is None, error
    response = result.get_response()
    values = result.as_numpy("OUT").tolist() if response.outputs else []
    return response.id, values, response.parameters["triton_final_response"].bool_param


firsts = sorted(next_response() for _ in range(2))
assert firsts == [("A", [1], False), ("B", [10], False)], firsts
open(f"{folder}/a", "w").close()
open(f"{folder}/b", "w").close()
rest = sorted(next_response() for _ in range(3))
# B asked for the empty final response; A did not get one.
assert rest == [("A", [2], False), ("B", [], True), ("B", [20], False)], rest
# An error response in the middle of a stream: the responses after it still come.
GRPC.async_stream_infer("waiter", waiter_inputs(tgrpc, [7, -1, 8], ""), request_id="C")
first = next_response()
result, error = received.get(timeout=30)
assert result is None and "-1 is negative" in str(error), (result, error)
assert (first, next_response()) == (("C", [7], False), ("C", [8], False)), first
# An ensemble with a decoupled step: each of waiter's responses runs square, each square one
# response of the ensemble, the final flag on the last; an error response of the step ends
# the ensemble's request with it, in Triton's words.
GRPC.async_stream_infer("wait_square", waiter_inputs(tgrpc, [2, 3, 4], ""), request_id="E")
assert [next_response() for _ in range(3)] == [("E", [4], False), ("E", [9], False), ("E", [16], True)]
GRPC.async_stream_infer("wait_square", waiter_inputs(tgrpc, [5, -1, 6], ""), request_id="F")
assert next_response() == ("F", [25], False)
result, error = received.get(timeout=30)
assert result is None and "in ensemble 'wait_square', " in str(error) and "-1 is negative" in str(error), error
GRPC.stop_stream()
assert received.empty(), list(received.queue)
assert HTTP.get_model_config("wait_square")["model_transaction_policy"] == {"decoupled": True}
for client, module, says in ((GRPC, tgrpc, "ModelInfer RPC doesn't support models with decoupled transaction policy"),
                             (HTTP, thttp, "HTTP end point doesn't support models with decoupled transaction policy")):
    for model in ("waiter", "wait_square"):
        try:
            client.infer(model, waiter_inputs(module, [1], ""))
            raise AssertionError(f"decoupled {model} answered a unary call")
        except tritonclient_errors.InferenceServerException as e:
            assert says in str(e), str(e)

# An ensemble: Python preprocessing then squeezenet. Its answer is the two steps' called one
# after the other; its configuration, metadata and statistics are Triton's for an ensemble.
image = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
for client, module in ((HTTP, thttp), (GRPC, tgrpc)):
    given = module.InferInput("IMAGE", [224, 224, 3], "UINT8")
    given.set_data_from_numpy(image)
    prob = client.infer("classify", [given]).as_numpy("PROB")
    data = client.infer("preprocess", [given]).as_numpy("DATA")
    direct = module.InferInput("data_0", list(data.shape), "FP32")
    direct.set_data_from_numpy(data)
    np.testing.assert_array_equal(prob, client.infer("squeezenet", [direct]).as_numpy("softmaxout_1"))


async def aio_ensemble():
    # The asyncio clients get the same answer from the ensemble.
    for client, module in ((thttp_aio.InferenceServerClient(f"127.0.0.1:{http_port}"), thttp),
                           (tgrpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}"), tgrpc)):
        try:
            given = module.InferInput("IMAGE", [224, 224, 3], "UINT8")
            given.set_data_from_numpy(image)
            np.testing.assert_array_equal((await client.infer("classify", [given])).as_numpy("PROB"), prob)
        finally:
            await client.close()


asyncio.run(aio_ensemble())
assert HTTP.is_model_ready("classify")
config = HTTP.get_model_config("classify")
assert config["platform"] == "ensemble" and config["backend"] == "", config
assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == ["preprocess", "squeezenet"], config
assert "instance_group" not in config or not config["instance_group"], config
assert GRPC.get_model_metadata("classify").platform == "ensemble"
ensemble_stats = HTTP.get_inference_statistics("classify")["model_stats"][0]["inference_stats"]
assert int(ensemble_stats["success"]["count"]) == 4, ensemble_stats  # sync and asyncio, HTTP and gRPC
squeezenet_stats = HTTP.get_inference_statistics("squeezenet")["model_stats"][0]["inference_stats"]
assert int(squeezenet_stats["success"]["count"]) == 6, squeezenet_stats  # four through the ensemble
request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/index", data=b"{}", method="POST")
lost = {m["name"]: m for m in json.load(urllib.request.urlopen(request))}["lost"]
assert lost["state"] == "UNAVAILABLE", lost
assert "ensemble lost contains models that are not available or ambiguous: nowhere" in lost["reason"], lost

# Model control from a model (explicit mode, as the repository API): readiness, unload, load,
# a load with a configuration and the model file given, and python_backend's words for errors.
given = thttp.InferInput("X", [1], "FP32")
given.set_data_from_numpy(np.ones(1, dtype=np.float32))
report = json.loads(HTTP.infer("control", [given]).as_numpy("REPORT")[0])
readiness, loading = "Failed to check model readiness: ", "Failed to load model: "
assert report["initialize"]["ready"] == {"error": f"{readiness}Request for unknown model: 'control' is not found"}, report
assert report["initialize"]["load"]["error"].startswith(
    f"{loading}model 'control' asked to load or unload 'spare' from initialize or finalize"), report
assert report["ready"] is True and report["ready_version"] is True, report
assert report["missing"] == {"error": f"{readiness}Request for unknown model: 'nowhere' is not found"}, report
assert report["bad_version"] == {"error": (
    f"{readiness}failed to get model version from specified version string 'abc' (details: stol), "
    "version should be an integral value > 0")}, report
assert report["unload"] is None and report["load"] is None and report["after_load"] is True, report
assert report["after_unload"]["error"].startswith(f"{readiness}Request for unknown model: 'spare' has no available versions"), report
assert report["load_missing"]["error"].startswith(loading) and "nowhere" in report["load_missing"]["error"], report
assert report["files_not_dict"] == {"error": (
    "failed to load model 'spare', files should be a dictionary of file paths and file contents")}, report
assert report["key_not_file"] == {"error": f"{loading}Unrecognized load parameter '1/model.onnx' with type 'BYTES'"}, report
assert report["copy"] is None and report["copy_sum"] == 4.0 and report["copy_unload"] is None, report
assert HTTP.is_model_ready("spare") and not HTTP.is_model_ready("spare_copy")
assert report["dependents"] is None, report
for name in ("classify", "preprocess", "squeezenet"):
    assert report["after_dependents"][name]["error"].startswith(
        f"{readiness}Request for unknown model: '{name}' has no available versions"), report
assert report["after_dependents"]["add"] is True, report
assert report["itself"] is None and not HTTP.is_model_ready("control"), report
assert report["while_draining"]["error"].startswith(
    "Failed to unload model: model control stayed busy for 3.0 s (CORRAL_EXEC_TIMEOUT)"), report
assert HTTP.is_model_ready("spare"), "the unload asked while draining did nothing"

print("python model checks passed:", {pid: lists for pid, lists in seen.items()})
