"""The real clients against a running `corral serve` (started by serve.rs in explicit mode
with squeezenet, magika and add loaded): tritonclient HTTP (binary and JSON), tritonclient
gRPC, and the kserve SDK's REST client. Outputs are compared with the onnxruntime Python
package on the same input. Exits non-zero on the first failed check; prints one line per check.

usage: serve_clients.py HTTP_PORT GRPC_PORT METRICS_PORT MAGIKA_ONNX
"""

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import onnxruntime


def magika_input_and_answer(magika_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(2, 2048), dtype=np.int32)
    return x, onnxruntime.InferenceSession(magika_path).run(None, {"bytes": x})[0]


if sys.argv[1] == "kserve":
    # The kserve SDK registers the same protobuf package as tritonclient.grpc, so the two
    # cannot share a process: this part runs in its own.
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    url, magika_path = sys.argv[2:4]
    x, reference = magika_input_and_answer(magika_path)

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        ready = await client.is_server_ready(url)
        request = InferRequest(model_name="magika", infer_inputs=[InferInput(name="bytes", shape=list(x.shape), datatype="INT32", data=x.tolist())])
        response = await client.infer(url, request, model_name="magika")
        await client.close()
        return ready, response

    ready, response = asyncio.run(call())
    got = np.array(response.outputs[0].data, dtype=np.float32).reshape(response.outputs[0].shape)
    worst = float(np.abs(got - reference).max())
    ok = ready and got.shape == reference.shape and worst <= 1e-4
    print(f"{'ok' if ok else 'FAILED'}: kserve REST: ready and magika equals onnxruntime (worst {worst:.1e})")
    sys.exit(0 if ok else 1)

import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402
from checks import check, fails, raw_http  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

http_port, grpc_port, metrics_port, magika_path = sys.argv[1:5]
HTTP = f"127.0.0.1:{http_port}"
GRPC = f"127.0.0.1:{grpc_port}"


def raw(method, path, body=None, headers=None):
    return raw_http(HTTP, method, path, body, headers)


http = thttp.InferenceServerClient(HTTP)
grpc = tgrpc.InferenceServerClient(GRPC)
deadline = time.time() + 60
while not http.is_server_ready():
    check("server becomes ready within 60 s", time.time() < deadline)
    time.sleep(0.1)

# Health and metadata over both protocols.
check("live and ready over HTTP", http.is_server_live() and http.is_server_ready())
check("live and ready over gRPC", grpc.is_server_live() and grpc.is_server_ready())
check("server metadata names corral", http.get_server_metadata()["name"] == "corral")
check("gRPC server metadata", grpc.get_server_metadata().name == "corral")
meta = http.get_model_metadata("magika")
check("magika metadata", meta["inputs"][0] == {"name": "bytes", "datatype": "INT32", "shape": [-1, 2048]}, meta)
gmeta = grpc.get_model_metadata("magika")
check("gRPC magika metadata", list(gmeta.inputs[0].shape) == [-1, 2048] and gmeta.inputs[0].datatype == "INT32")
config = http.get_model_config("squeezenet")
check("squeezenet config from config.pbtxt", config["max_batch_size"] == 0 and config["instance_group"][0]["count"] == 2, config)
gconfig = grpc.get_model_config("squeezenet").config
check("gRPC config", gconfig.name == "squeezenet" and gconfig.input[0].dims == [1, 3, 224, 224])

# Real inference, compared with onnxruntime's own answer.
x, reference = magika_input_and_answer(magika_path)


def close(name, got):
    worst = float(np.abs(got - reference).max())
    check(f"{name}: magika equals onnxruntime (worst {worst:.1e})", got.shape == reference.shape and worst <= 1e-4)


for binary in (True, False):
    i = thttp.InferInput("bytes", list(x.shape), "INT32")
    i.set_data_from_numpy(x, binary_data=binary)
    out = thttp.InferRequestedOutput("target_label", binary_data=binary)
    close(f"HTTP {'binary' if binary else 'JSON'}", http.infer("magika", [i], outputs=[out]).as_numpy("target_label"))
gi = tgrpc.InferInput("bytes", list(x.shape), "INT32")
gi.set_data_from_numpy(x)
close("gRPC", grpc.infer("magika", [gi]).as_numpy("target_label"))

# Streaming: answers come back in the order sent, whatever the ids; an error is one answer and
# the stream goes on.
import queue  # noqa: E402
import random  # noqa: E402

answers = queue.Queue()
grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
ids = [f"call-{n}" for n in random.Random(3).sample(range(1000), 20)]
sent = ids[:10] + ["error"] + ids[10:]
for request_id in sent:
    grpc.async_stream_infer("nope" if request_id == "error" else "magika", [gi], request_id=request_id)
got = [answers.get(timeout=60) for _ in sent]
grpc.stop_stream()
seen = ["error" if error else result.get_response().id for result, error in got]
check("stream answers in order, ids kept", seen == sent, seen)
failed = got[10][1]
check("a failed stream request is an answer with Triton's words",
      failed is not None and failed.message().startswith("Request for unknown model: 'nope' is not found"), failed)
worst = max(float(np.abs(r.as_numpy("target_label") - reference).max()) for r, e in got if e is None)
check(f"streamed magika equals onnxruntime (worst {worst:.1e})", worst <= 1e-4)

# Compression: requests and answers, both protocols.
for algorithm in ("gzip", "deflate"):
    i = thttp.InferInput("bytes", list(x.shape), "INT32")
    i.set_data_from_numpy(x, binary_data=True)
    got = http.infer("magika", [i], request_compression_algorithm=algorithm, response_compression_algorithm=algorithm)
    close(f"HTTP {algorithm} request and answer", got.as_numpy("target_label"))
with urllib.request.urlopen(urllib.request.Request(f"http://{HTTP}/v2", headers={"Accept-Encoding": "gzip"})) as r:
    # Triton compresses inference answers only (aiohttp clients send Accept-Encoding always).
    check("a metadata answer is never compressed", "Content-Encoding" not in r.headers
          and json.loads(r.read())["name"] == "corral")
close("gRPC gzip", grpc.infer("magika", [gi], compression_algorithm="gzip").as_numpy("target_label"))


def grpc_answer_compressed(gzip_request):
    """Whether a raw ModelInfer answer to a client that accepts gzip came compressed (the
    message's own flag: grpc-encoding only names what a compressed message would use)."""
    import gzip as gz
    import tempfile
    from tritonclient.grpc import service_pb2
    request = service_pb2.ModelInferRequest(model_name="magika", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="bytes", datatype="INT32", shape=list(x.shape))
    payload = request.SerializeToString()
    flag, payload = (1, gz.compress(payload)) if gzip_request else (0, payload)
    with tempfile.NamedTemporaryFile() as body, tempfile.NamedTemporaryFile() as answer:
        body.write(bytes([flag]) + len(payload).to_bytes(4, "big") + payload)
        body.flush()
        headers = ["content-type: application/grpc", "te: trailers", "grpc-accept-encoding: identity,deflate,gzip"]
        if gzip_request:
            headers.append("grpc-encoding: gzip")
        trailers = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", "-o", answer.name,
                                   *[a for h in headers for a in ("-H", h)], "--data-binary", f"@{body.name}",
                                   f"http://{GRPC}/inference.GRPCInferenceService/ModelInfer"],
                                  capture_output=True, text=True, check=True).stdout
        framed = answer.read()
    assert "grpc-status: 0" in trailers and len(framed) > 5, trailers
    return framed[0] == 1


# grpc clients accept gzip by default; compressing every tensor answer would cost CPU for little.
check("a plain gRPC request gets a plain answer", not grpc_answer_compressed(False))
check("a gzip gRPC request gets a gzip answer", grpc_answer_compressed(True))

kserve = subprocess.run([sys.executable, __file__, "kserve", f"http://{HTTP}", magika_path], capture_output=True, text=True)
print(kserve.stdout, end="")
check("kserve SDK client", kserve.returncode == 0, kserve.stderr)

# add: x + y on ONNX Runtime, JSON nested data.
a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
status, body = raw("POST", "/v2/models/add/infer", json.dumps({"inputs": [
    {"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": a.tolist()},
    {"name": "y", "shape": [3, 4, 5], "datatype": "FP32", "data": a.ravel().tolist()},
]}).encode())
check("nested and flat JSON data", status == 200 and json.loads(body)["outputs"][0]["data"] == (2 * a).ravel().tolist(), body)

# Errors: each a clear message with Triton's status, and the server keeps serving.
def error_of(status_expected, method, path, body=None, headers=None, contains=""):
    status, text = raw(method, path, body, headers)
    message = json.loads(text).get("error", "") if text else ""
    check(f"{method} {path} -> {status_expected} ({message[:70]})", status == status_expected and contains in message, (status, text))


error_of(404, "GET", "/v2/models/nope", contains="Request for unknown model: 'nope' is not found")
error_of(500, "POST", "/v2/models/magika/infer", b"{not json", contains="failed to parse the request JSON buffer")
error_of(400, "POST", "/v2/models/magika/infer", json.dumps({"inputs": [{"name": "byts", "shape": [1, 2048], "datatype": "INT32", "data": [0] * 2048}]}).encode(), contains="byts")
error_of(400, "POST", "/v2/models/magika/infer", json.dumps({"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "FP32", "data": [0] * 2048}]}).encode(), contains="INT32")
error_of(500, "POST", "/v2/models/magika/infer", json.dumps({"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32", "data": [0] * 7}]}).encode(), contains="shape does not match true shape")
header = json.dumps({"inputs": [{"name": "bytes", "shape": [1, 2048], "datatype": "INT32", "parameters": {"binary_data_size": 8192}}]}).encode()
error_of(400, "POST", "/v2/models/magika/infer", header + b"\0" * 100, {"Inference-Header-Content-Length": str(len(header))}, contains="expecting 8092 additional bytes")
error_of(400, "POST", "/v2/models/magika/infer", b" " * 70_000,
         contains="exceeds the maximum allowed input size of 65536 bytes. Use --http-max-input-size to increase the limit.")
import gzip  # noqa: E402

error_of(400, "POST", "/v2/models/magika/infer", gzip.compress(b" " * 70_000), {"Content-Encoding": "gzip"},
         contains="Decompressed data size exceeds the maximum allowed value of 65536 bytes")
error_of(400, "POST", "/v2/models/magika/infer", b"not gzip", {"Content-Encoding": "gzip"}, contains="not valid gzip")
error_of(501, "POST", "/v2/models/magika/infer", b"{}", {"Content-Encoding": "br"}, contains="Unsupported compression type")
try:
    big = tgrpc.InferInput("bytes", [10, 2048], "INT32")
    big.set_data_from_numpy(np.zeros((10, 2048), np.int32))
    grpc.infer("magika", [big], compression_algorithm="gzip")
    check("a gzip message inflating past the limit fails", False)
except InferenceServerException as e:
    check("gRPC gzip past the limit -> RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED" in str(e.status()), e)
error_of(400, "POST", "/v2/repository/models/..%2Fetc/load", contains="must not contain path traversal characters")
error_of(400, "POST", "/v2/repository/models/broken/load", contains="load failed for model 'broken': version 1 is at UNAVAILABLE state")
try:
    grpc.infer("nope", [gi])
    check("gRPC unknown model fails", False)
except InferenceServerException as e:
    check("gRPC unknown model -> NOT_FOUND", "NOT_FOUND" in str(e.status()), e)
try:
    bad = tgrpc.InferInput("bytes", [1, 2048], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2048), dtype=np.float32))
    grpc.infer("magika", [bad])
    check("gRPC wrong datatype fails", False)
except InferenceServerException as e:
    check("gRPC wrong datatype -> INVALID_ARGUMENT", "INVALID_ARGUMENT" in str(e.status()), e)
# Triton's own words, which clients and scripts written for Triton match, over both protocols.
for client in (http, grpc):
    kind = "HTTP" if client is http else "gRPC"
    fails(f"{kind} unknown model", lambda: client.get_model_metadata("foo"), "Request for unknown model: 'foo' is not found", starts=True)
    fails(f"{kind} unknown version", lambda: client.get_model_metadata("magika", model_version="99"),
          "Request for unknown model: 'magika' version 99 is not found", starts=True)
    fails(f"{kind} bad version string", lambda: client.get_model_metadata("magika", model_version="latest"),
          "failed to get model version from specified version string 'latest'", starts=True)
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
import grpc as grpcio  # noqa: E402

stub = service_pb2_grpc.GRPCInferenceServiceStub(grpcio.insecure_channel(GRPC))
mixed = service_pb2.ModelInferRequest(model_name="magika")
tensor = mixed.inputs.add(name="bytes", datatype="INT32", shape=[1, 2048])
tensor.contents.int_contents.extend([0] * 2048)
mixed.raw_input_contents.append(np.zeros((1, 2048), np.int32).tobytes())
try:
    stub.ModelInfer(mixed)
    check("contents with raw_input_contents fails", False)
except grpcio.RpcError as e:
    check("contents with raw_input_contents: Triton's words", e.details().startswith(
        "contents field must not be specified when using raw_input_contents for 'bytes' for model 'magika'"), e.details())
close("still serving after errors", http.infer("magika", [i], outputs=[out]).as_numpy("target_label"))

# Repository: index, unload, reload, explicit load.
index = {m["name"]: m for m in http.get_model_repository_index()}
check("index shows broken with its reason", index["broken"]["state"] == "UNAVAILABLE" and "broken" in index["broken"]["reason"], index)
check("index shows magika ready", index["magika"]["state"] == "READY")
http.unload_model("add")
check("unloaded model is not ready", not http.is_model_ready("add"))
error_of(404, "POST", "/v2/models/add/infer", json.dumps({"inputs": []}).encode(),
         contains="Request for unknown model: 'add' has no available versions")
grpc.load_model("add")
check("reloaded over gRPC", grpc.is_model_ready("add"))
grpc.unload_model("add")
check("unloaded over gRPC", not grpc.is_model_ready("add"))
http.load_model("add")
check("loaded again over HTTP", http.is_model_ready("add"))

# Load with a configuration override, and with the model's files (Triton's repository extension).
def add_config(name, max_batch_size):
    dims = [4, 5] if max_batch_size else [3, 4, 5]
    tensor = lambda n: {"name": n, "data_type": "TYPE_FP32", "dims": dims}  # noqa: E731
    return json.dumps({"name": name, "backend": "onnxruntime", "max_batch_size": max_batch_size,
                       "input": [tensor("x"), tensor("y")], "output": [tensor("sum")]})


def add_works(client, module, name):
    a, b = module.InferInput("x", [3, 4, 5], "FP32"), module.InferInput("y", [3, 4, 5], "FP32")
    a.set_data_from_numpy(np.ones((3, 4, 5), np.float32))
    b.set_data_from_numpy(np.ones((3, 4, 5), np.float32))
    return float(client.infer(name, [a, b]).as_numpy("sum").sum()) == 120.0


http.load_model("add", config=add_config("add", 3))
check("HTTP load with a config override", http.get_model_config("add")["max_batch_size"] == 3 and add_works(http, thttp, "add"))
try:
    http.load_model("add", config="{not json")
    check("a bad override fails", False)
except InferenceServerException as e:
    # Triton: a failed poll (500), "failed to load" (what tritonclient's examples look for);
    # corral gives the reason after Triton's words.
    check("a bad override fails the load as Triton's does",
          e.message().startswith("failed to load 'add', failed to poll from model repository: Invalid config override: ")
          and e.status() == "500", e)
check("the loaded version keeps serving after a bad override",
      http.get_model_config("add")["max_batch_size"] == 3 and add_works(http, thttp, "add"))
grpc.load_model("add", config=add_config("add", 0))
check("gRPC load with a config override", grpc.get_model_config("add").config.max_batch_size == 0)
add_path = magika_path.split("/magika/")[0] + "/onnx/backend/test/data/node/test_add/model.onnx"
with open(add_path, "rb") as f:
    add_bytes = f.read()
http.load_model("given", config=add_config("given", 0), files={"file:1/model.onnx": add_bytes})
check("HTTP load with the model's files", add_works(http, thttp, "given"))
grpc.load_model("given_g", config=add_config("given_g", 0), files={"file:1/model.onnx": add_bytes})
check("gRPC load with the model's files", add_works(grpc, tgrpc, "given_g"))
try:
    http.load_model("escape", config=add_config("escape", 0), files={"file:../x.onnx": add_bytes})
    check("a file path leaving the folder fails", False)
except InferenceServerException as e:
    check("a file path leaving the folder is refused", "must stay within model directory" in e.message(), e)
try:
    grpc.load_model("given", files={"file:1/model.onnx": add_bytes})
    check("files without config fail", False)
except InferenceServerException as e:
    check("files without a config are refused", "Load parameter 'config' must be specified for model file override" in e.message(), e)

# Statistics agree with what was sent.
stats = http.get_inference_statistics("magika")["model_stats"][0]
check("magika statistics count successes", stats["inference_stats"]["success"]["count"] >= 5, stats)
metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
line = next(l for l in metrics.splitlines() if l.startswith('nv_inference_request_success{model="magika"'))
check("metrics match statistics", int(line.split()[-1]) == stats["inference_stats"]["success"]["count"], line)
check("per-core metrics", 'corral_core_executions_total{core="nc0"' in metrics)
print("all checks passed")
