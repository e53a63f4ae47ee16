"""Triton's own checks, held against `corral serve` (started by serve.rs in explicit mode on an
repository of versioned_models.py, with --trace-file): model versions under each version_policy, the asyncio
clients' metadata, statistics and repository calls with their default headers, a raw binary
request, CUDA shared-memory status and unregister, request rules with Triton's status and
words, the trace extension and its file, and metrics labelled by version. The models
(y = x + 10 * version) are loaded through the repository API.

usage: serve_exact.py HTTP_PORT GRPC_PORT METRICS_PORT REPO TRACE_FILE
"""

import asyncio
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

import grpc as grpcio
import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from checks import check, fails
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

http_port, grpc_port, metrics_port, repo, trace_file = sys.argv[1:6]
HTTP, GRPC = f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
http = thttp.InferenceServerClient(HTTP)
grpc = tgrpc.InferenceServerClient(GRPC)
clients = [("HTTP", thttp, http), ("gRPC", tgrpc, grpc)]
x = np.array([1, 2, 3, 4], np.float32)


TENSORS = 'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'


def configure(name, policy):
    with open(f"{repo}/{name}/config.pbtxt", "w") as f:
        f.write(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n{TENSORS}{policy}\n')


# Written by versioned_models.py, each with versions 1, 2, 3.
policies = {
    "latest1": [3],
    "latest2": [2, 3],
    "every": [1, 2, 3],
    "chosen": [1, 3],
}
for name in [*policies, "pair"]:
    http.load_model(name)


def infer(module, client, model, version="", outputs=None):
    i = module.InferInput("x", [4], "FP32")
    i.set_data_from_numpy(x)
    wanted = [module.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(model, [i], model_version=version, outputs=wanted).as_numpy("y")


# Versions: each selected one answers with its own number; others are Triton's error.
for name, loaded in policies.items():
    for how, module, client in clients:
        for v in (1, 2, 3):
            if v in loaded:
                got = infer(module, client, name, str(v))
                check(f"{how} {name} version {v} answers as itself", np.array_equal(got, x + 10 * v), got)
                check(f"{how} {name} version {v} is ready", client.is_model_ready(name, str(v)))
            else:
                fails(f"{how} {name} version {v} is not served", lambda: infer(module, client, name, str(v)),
                      f"Request for unknown model: '{name}' version {v} is not found", starts=True)
                check(f"{how} {name} version {v} is not ready", not client.is_model_ready(name, str(v)))
        got = infer(module, client, name)
        check(f"{how} {name} without a version goes to the highest", np.array_equal(got, x + 10 * max(loaded)), got)
    meta = http.get_model_metadata(name)
    check(f"{name} metadata lists its versions", meta["versions"] == [str(v) for v in loaded], meta)
    one = grpc.get_model_metadata(name, model_version=str(loaded[0]))
    check(f"{name} metadata of one version lists it", list(one.versions) == [str(loaded[0])], one)
    stats = http.get_inference_statistics(name)["model_stats"]
    check(f"{name} statistics per version", [s["version"] for s in stats] == [str(v) for v in loaded], stats)
    check(f"{name} every version counted its calls",
          all(s["inference_stats"]["success"]["count"] >= 2 for s in stats), stats)
index = [(e["name"], e.get("version"), e.get("state")) for e in http.get_model_repository_index()]
check("the index lists every loaded version", ("every", "2", "READY") in index and ("chosen", "3", "READY") in index
      and ("chosen", "2", "READY") not in index, index)
metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
check("metrics carry each version", 'nv_inference_request_success{model="every",version="2"}' in metrics)
check("no metric label names the models of a core", 'models="' not in metrics and "corral_core_utilization" not in metrics)
check("which versions run on a core is an info gauge", 'corral_core_models{' in metrics and 'model="every",version="2"} 1' in metrics)

# A reload keeps unchanged versions, swaps changed ones, follows a new policy.
shutil.copy(f"{repo}/.spare/plus300.onnx", f"{repo}/every/3/model.onnx")
http.load_model("every")
check("a changed version answers anew", np.array_equal(infer(thttp, http, "every", "3"), x + 300))
check("an unchanged version answers as before", np.array_equal(infer(thttp, http, "every", "1"), x + 10))
configure("latest2", "")
grpc.load_model("latest2")
fails("a version the new policy drops stops", lambda: infer(tgrpc, grpc, "latest2", "2"),
      "Request for unknown model: 'latest2' version 2 is not found", starts=True)
check("the version it keeps still answers", np.array_equal(infer(tgrpc, grpc, "latest2", "3"), x + 30))
with open(f"{repo}/chosen/3/model.onnx", "wb") as f:
    f.write(b"not a model")
fails("a reload whose version fails is refused in Triton's words", lambda: http.load_model("chosen"),
      "load failed for model 'chosen': version 3 is at UNAVAILABLE state: Internal: ", starts=True)
check("the old versions keep serving after a failed reload",
      np.array_equal(infer(thttp, http, "chosen", "3"), x + 30) and np.array_equal(infer(thttp, http, "chosen", "1"), x + 10))
fails("a specific version that is missing fails the load naming it", lambda: http.load_model("bad_policy"),
      "version 4 is specified for model 'bad_policy', but the version directory is not present")


# asyncio clients with their default headers (aiohttp always sends Accept-Encoding).
async def with_asyncio():
    import tritonclient.grpc.aio as agrpc
    import tritonclient.http.aio as ahttp

    client = ahttp.InferenceServerClient(HTTP)
    meta = await client.get_model_metadata("every")
    stats = await client.get_inference_statistics("every")
    index = await client.get_model_repository_index()
    config = await client.get_model_config("every")
    i = ahttp.InferInput("x", [4], "FP32")
    i.set_data_from_numpy(x)
    y = (await client.infer("every", [i], model_version="2")).as_numpy("y")
    await client.close()
    check("asyncio HTTP metadata, statistics, index, config and infer",
          meta["versions"] == ["1", "2", "3"] and len(stats["model_stats"]) == 3 and len(index) > 0
          and config["name"] == "every" and np.array_equal(y, x + 20), (meta, config))
    client = agrpc.InferenceServerClient(GRPC)
    meta = await client.get_model_metadata("every")
    stats = await client.get_inference_statistics("every")
    await client.close()
    check("asyncio gRPC metadata and statistics", list(meta.versions) == ["1", "2", "3"] and len(stats.model_stats) == 3)


asyncio.run(with_asyncio())


def raw(method, path, body=None, headers=None):
    request = urllib.request.Request(f"http://{HTTP}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def error_of(what, status_expected, method, path, body, text, headers=None):
    status, _, answer = raw(method, path, body, headers)
    message = json.loads(answer).get("error", "") if answer else ""
    check(f"{what} -> {status_expected}: {message[:90]}", status == status_expected and message == text, (status, answer))


error_of("the readiness of a model that is not loaded", 400, "GET", "/v2/models/nope/ready", None, "Model version not ready")

# Compression: inference answers only.
status, headers, body = raw("GET", "/v2/models/every", headers={"Accept-Encoding": "gzip"})
check("metadata is never compressed", status == 200 and headers.get("Content-Encoding") is None
      and json.loads(body)["name"] == "every")
infer_body = json.dumps({"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": x.tolist()}]}).encode()
status, headers, body = raw("POST", "/v2/models/every/infer", infer_body, {"Accept-Encoding": "gzip"})
check("an inference answer is compressed when asked", headers.get("Content-Encoding") == "gzip")
error_of("an unknown Content-Encoding", 501, "POST", "/v2/models/every/infer", infer_body, "Unsupported compression type",
         {"Content-Encoding": "br"})

# Raw binary request: the body is the one input's bytes; outputs come back binary.
status, headers, body = raw("POST", "/v2/models/latest1/infer", x.tobytes(), {"Inference-Header-Content-Length": "0"})
length = int(headers.get("Inference-Header-Content-Length", "0"))
header = json.loads(body[:length]) if status == 200 else body
check("a raw binary request answers in binary", status == 200 and header["outputs"][0]["parameters"]["binary_data_size"] == 16
      and np.array_equal(np.frombuffer(body[length:], np.float32), x + 30), header)
error_of("a raw request of the wrong size", 400, "POST", "/v2/models/latest1/infer", b"\0" * 12,
         "[request id: <id_unknown>] input byte size mismatch for input 'raw_input' for model 'latest1'. Expected 16, got 12",
         {"Inference-Header-Content-Length": "0"})
error_of("a raw request to a model of two inputs", 400, "POST", "/v2/models/pair/infer", b"\0" * 16,
         "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'pair' model configuration",
         {"Inference-Header-Content-Length": "0"})

# CUDA shared memory, as Triton without GPUs answers it.
for how, module, client in clients:
    status = client.get_cuda_shared_memory_status()
    empty = status == [] if module is thttp else len(status.regions) == 0
    check(f"{how} CUDA shared memory status lists no region", empty, status)
    # Unregister succeeds, as in Triton without GPUs; an error is the check's detail rather
    # than a traceback that ends the script.
    errors = []
    for name in ("", "nothing"):
        try:
            client.unregister_cuda_shared_memory(name)
        except InferenceServerException as e:
            errors.append(f"unregister {name!r}: {e.message()}")
    check(f"{how} CUDA shared memory unregister succeeds", errors == [], errors)
    fails(f"{how} CUDA shared memory register is refused",
          lambda: client.register_cuda_shared_memory("r", b"\0" * 64, 0, 16),
          "failed to register CUDA shared memory region: 'r', GPUs not supported")
for path in ("/v2/cudasharedmemory/unregister", "/v2/cudasharedmemory/region/nothing/unregister"):
    status, _, body = raw("POST", path)
    check(f"POST {path} answers 200 with no body, as Triton's", (status, body) == (200, b""), (status, body))

# Rules Triton enforces, with its status and words.
both = [thttp.InferRequestedOutput("y"), thttp.InferRequestedOutput("y")]
given = thttp.InferInput("x", [4], "FP32")
given.set_data_from_numpy(x)
fails("duplicate output names", lambda: http.infer("latest1", [given], outputs=both),
      "[request id: <id_unknown>] output 'y' already exists in request")
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpcio.insecure_channel(GRPC))
for arrangement in ("typed first", "raw first"):
    mixed = service_pb2.ModelInferRequest(model_name="pair")
    typed, other = ("a", "b") if arrangement == "typed first" else ("b", "a")
    for n in ("a", "b"):
        tensor = mixed.inputs.add(name=n, datatype="FP32", shape=[4])
        if n == typed:
            tensor.contents.fp32_contents.extend(x.tolist())
    mixed.raw_input_contents.append(x.tobytes())
    try:
        stub.ModelInfer(mixed)
        check(f"contents with raw_input_contents ({arrangement}) fails", False)
    except grpcio.RpcError as e:
        check(f"contents with raw_input_contents ({arrangement}): Triton's words",
              e.code() == grpcio.StatusCode.INVALID_ARGUMENT and e.details() ==
              f"contents field must not be specified when using raw_input_contents for '{typed}' for model 'pair'", e.details())
deep = ('{"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": ' + "[" * 120 + "1,2,3,4" + "]" * 120
        + "}]}").encode()
error_of("JSON nested deeper than 100", 400, "POST", "/v2/models/latest1/infer", deep,
         "Unable to parse 'data': JSON nesting depth exceeds maximum allowed limit (100)")
for how, module, client in clients:
    i = module.InferInput("x", [4], "FP32")
    i.set_data_from_numpy(x)
    top = client.infer("latest1", [i], outputs=[module.InferRequestedOutput("y", class_count=10)]).as_numpy("y")
    check(f"{how} a class_count above the output's size gives every class (Triton clamps)", top.shape == (4,), top)
fails("a shared-memory key with Triton's reserved prefix",
      lambda: http.register_system_shared_memory("r", "/triton_python_backend_shm_region_1", 16),
      "cannot register shared memory region 'r' with key '/triton_python_backend_shm_region_1' as the key contains the reserved prefix 'triton_python_backend_shm_region_'")

# Status codes and words of Triton for each input mistake, over both protocols.
prefix = "[request id: <id_unknown>] "
for how, module, client in clients:
    def call(inputs, model="latest1"):
        made = []
        for name, datatype, array in inputs:
            i = module.InferInput(name, list(array.shape), datatype)
            i.set_data_from_numpy(array)
            made.append(i)
        return client.infer(model, made)
    fails(f"{how} a missing input", lambda: call([("a", "FP32", x)], "pair"),
          f"{prefix}expected 2 inputs but got 1 inputs for model 'pair'. Got input(s) ['a'], but missing required input(s) ['b']. Please provide all required input(s).")
    fails(f"{how} an unexpected input", lambda: call([("a", "FP32", x), ("c", "FP32", x)], "pair"),
          "unexpected inference input 'c' for model 'pair'")
    fails(f"{how} a wrong datatype", lambda: call([("x", "INT32", x.astype(np.int32))]),
          f"{prefix}inference input 'x' data-type is 'INT32', but model 'latest1' expects 'FP32'")
    fails(f"{how} a wrong shape", lambda: call([("x", "FP32", np.zeros(5, np.float32))]),
          f"{prefix}unexpected shape for input 'x' for model 'latest1'. Expected [4], got [5]. ")
    fails(f"{how} an unknown output", lambda: infer(module, client, "latest1", outputs=["z"]),
          "unexpected inference output 'z' for model 'latest1'")
header = json.dumps({"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}).encode()
error_of("an element count its bytes do not fill", 400, "POST", "/v2/models/latest1/infer", header + b"\0" * 12,
         f"{prefix}input byte size mismatch for input 'x' for model 'latest1'. Expected 16, got 12",
         {"Inference-Header-Content-Length": str(len(header))})
fails("a load file name too long for the file system",
      lambda: http.load_model("long", config=json.dumps({"backend": "onnxruntime"}), files={"file:" + "A" * 300: b"x"}),
      "failed to load 'long', failed to poll from model repository")
fails("a model name that leaves the repository", lambda: grpc.load_model("../etc"),
      "invalid model name '../etc', model name must not contain path traversal characters")

# The trace extension: settings read and set through both protocols, and its file.
settings = http.get_trace_settings()
check("trace settings show the server's file", settings["trace_file"] == trace_file and settings["trace_level"] == ["OFF"], settings)
fails("the trace file cannot be changed through the API", lambda: http.update_trace_settings(settings={"trace_file": "x"}),
      "trace file location can not be updated through network protocol")
on = http.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "log_frequency": "1"})
check("trace settings set and answered", on["trace_level"] == ["TIMESTAMPS"] and on["trace_rate"] == "1", on)
grpc.update_trace_settings(model_name="latest1", settings={"trace_rate": "5"})
model = http.get_trace_settings(model_name="latest1")
check("a model's trace setting reads back over the other protocol", model["trace_rate"] == "5" and model["log_frequency"] == "1", model)
check("another model follows the server's", http.get_trace_settings(model_name="every")["trace_rate"] == "1")
infer(thttp, http, "every", "2")
http.update_trace_settings(settings={"trace_level": ["OFF"]})
deadline = time.time() + 30
while not os.path.exists(f"{trace_file}.0"):
    check("the trace file appears within 30 s", time.time() < deadline)
    time.sleep(0.05)
with open(f"{trace_file}.0") as f:
    trace = json.load(f)
check("the trace names its model and version", trace[0] == {"id": trace[0]["id"], "model_name": "every", "model_version": 2}, trace[0])
points = [(t["timestamps"][0]["name"], t["timestamps"][0]["ns"]) for t in trace[1:]]
order = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]
check("the trace has Triton's points in order", [n for n, _ in points] == order, points)
check("its timestamps never go back", all(a[1] <= b[1] for a, b in zip(points, points[1:])), points)
print("all checks passed")
