"""The answers Triton's own QA tests check (qa/L0_http, L0_input_validation, L0_shared_memory,
L0_parameters, L0_grpc), each asked of `corral serve` the way those tests ask it, through
tritonclient (HTTP and gRPC) or raw HTTP where they send raw bytes, against the models of
wording_models.py. The server runs with --model-control-mode=explicit --load-model=*,
--http-max-input-size=8388608, --http-restricted-api=model-repository:admin-key=admin-value
and --grpc-restricted-protocol=statistics:infer-key=infer-value. One line per check.

usage: serve_wording.py HTTP_PORT GRPC_PORT
"""

import asyncio
import json
import os
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from checks import check, fails, raw_http
from tritonclient.utils import InferenceServerException

http_port, grpc_port = sys.argv[1:3]
HTTP = f"127.0.0.1:{http_port}"
http = thttp.InferenceServerClient(HTTP)
grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
LIMIT = 8388608
ADMIN = {"admin-key": "admin-value"}


def raw(method, path, body=None, headers=None):
    return raw_http(HTTP, method, path, body, headers)


def error_of(what, expected_status, method, path, body, text, headers=None):
    status, answer = raw(method, path, body, headers)
    message = json.loads(answer).get("error", "") if answer else ""
    check(f"{what} -> {expected_status}: {message[:100]}", status == expected_status and text in message, (status, answer[:300]))


# L0_parameters, class_count_test: classification of a row of more than a million elements.
for name, module, client in (("HTTP", thttp, http), ("gRPC", tgrpc, grpc)):
    tensor = module.InferInput("INPUT0", [1, 1000001], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 1000001), dtype=np.float32))
    wanted = module.InferRequestedOutput("OUTPUT0", class_count=5)
    fails(f"{name}: a classification of a row past a million elements", lambda: client.infer("ident", [tensor], outputs=[wanted]),
          "classification output tensor too large")

# L0_http, http_input_size_limit_test: a raw binary body, and a JSON input, past the limit.
body = np.ones(LIMIT // 4 + 32, dtype=np.float32).tobytes()
error_of("a raw binary body past the limit", 400, "POST", "/v2/models/ident/infer", body,
         f"Raw input has a byte_size ({len(body)} bytes) that exceeds the maximum allowed value of {LIMIT} bytes. Use --http-max-input-size to increase the limit.",
         {"Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"})
big = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 3000000], "datatype": "FP32", "data": [1.0]}]}).encode()
error_of("a JSON input whose elements pass the limit", 400, "POST", "/v2/models/ident/infer", big,
         f"JSON input 'INPUT0' has a byte_size (12000000 bytes) that exceeds the maximum allowed value of {LIMIT} bytes. Use --http-max-input-size to increase the limit.")

# L0_http, http_test: test_buffer_size_overflow.
for shape, text in (([16, 2**60 + 2], "causes total element count to exceed maximum size of"),
                    ([4, 2**60 + 2], "byte size overflow for input 'INPUT0': element count (4611686018427387912) * data type size (4) exceeds maximum allowed size (9223372036854775807)")):
    payload = json.dumps({"inputs": [{"name": "INPUT0", "shape": shape, "datatype": "FP32", "data": [1.0]}]}).encode()
    error_of(f"a shape of {shape}", 400, "POST", "/v2/models/ident/infer", payload, text)

# test_inference_header_content_length_out_of_range.
error_of("a header length past an int32", 400, "POST", "/v2/models/ident/infer", b"{}",
         "Unable to parse Inference-Header-Content-Length, value is out of range [ -2147483648, 2147483647 ], got: 99999999999",
         {"Inference-Header-Content-Length": "99999999999"})

# test_repository_index_deeply_nested_json (restricted here: the header is given).
depth = 100000
nested = b'{"ready":' + b"[" * depth + b"true" + b"]" * depth + b"}"
error_of("a deeply nested repository index body", 400, "POST", "/v2/repository/index", nested,
         "Invalid value for 'ready': expected a boolean", ADMIN)
check("the server lives after it", raw("GET", "/v2/health/live")[0] == 200)

# L0_input_validation, InputShapeTest.test_input_string_shape_validation: both inputs wrong,
# Triton names the last.
for count, text in ((14, "expected 16 string elements for inference input 'INPUT1' for model 'strings', got 14"),
                    (18, "unexpected number of string elements 17 for inference input 'INPUT1' for model 'strings', expecting 16")):
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = tgrpc.InferInput(name, [1, count], "BYTES")
        strings = np.array([[str(i).encode() for i in range(count)]], dtype=np.object_)
        tensor.set_data_from_numpy(strings)
        tensor.set_shape([1, 16])
        inputs.append(tensor)
    fails(f"gRPC: {count} strings for 16", lambda: grpc.infer("strings", inputs), text)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = thttp.InferInput(name, [1, count], "BYTES")
        tensor.set_data_from_numpy(np.array([[str(i).encode() for i in range(count)]], dtype=np.object_), binary_data=True)
        tensor.set_shape([1, 16])
        inputs.append(tensor)
    fails(f"HTTP: {count} strings for 16", lambda: http.infer("strings", inputs), text)

# ModelNameValidationTest and the example clients: names Triton refuses, names it polls for.
fails("a name that leaves the repository", lambda: grpc.load_model("../etc", headers=ADMIN),
      "invalid model name '../etc', model name must not contain path traversal characters")
for name in ("...", "..my_model"):
    fails(f"a name with dots that is no model: {name}", lambda: grpc.load_model(name, headers=ADMIN),
          "failed to poll from model repository")
fails("a load with an override that is not JSON",
      lambda: http.load_model("ident", config="{not json", headers=ADMIN), "failed to load 'ident'")
check("the model keeps serving after it", http.is_model_ready("ident"))

# Restricted APIs: without the header, Triton's 403 over REST and UNAVAILABLE over gRPC.
error_of("the repository index without its header", 403, "POST", "/v2/repository/index", b"",
         "This API is restricted, expecting header 'admin-key'")
check("the repository index with it", raw("POST", "/v2/repository/index", b"", ADMIN)[0] == 200)
try:
    grpc.get_inference_statistics("ident")
    check("gRPC statistics without their header fail", False)
except InferenceServerException as e:
    check("gRPC statistics without their header are UNAVAILABLE", e.status() == "StatusCode.UNAVAILABLE"
          and "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'" in e.message(), e)
check("gRPC statistics with their header", grpc.get_inference_statistics("ident", headers={"triton-grpc-protocol-infer-key": "infer-value"}) is not None)

# L0_parameters: request parameters of Triton's own prefix (tritonclient refuses to send them,
# so they go as Triton's test sends them: raw JSON, and a raw gRPC message).
payload = json.dumps({"parameters": {"triton_x": "y"},
                      "inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}).encode()
error_of("HTTP: a triton_ parameter", 400, "POST", "/v2/models/ident/infer", payload,
         "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.")
import grpc as grpcio
from tritonclient.grpc import service_pb2, service_pb2_grpc

stub = service_pb2_grpc.GRPCInferenceServiceStub(grpcio.insecure_channel(f"127.0.0.1:{grpc_port}"))
request = service_pb2.ModelInferRequest(model_name="ident")
request.parameters["triton_x"].string_param = "y"
tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 2])
tensor.contents.fp32_contents.extend([1.0, 2.0])
try:
    stub.ModelInfer(request)
    check("gRPC: a triton_ parameter fails", False)
except grpcio.RpcError as e:
    check("gRPC: a triton_ parameter is refused in Triton's words", e.code() == grpcio.StatusCode.INVALID_ARGUMENT
          and e.details() == "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response", e)

# L0_input_validation: a model with an optional input.
fails("no input for a model with one optional", lambda: http.infer("optional", []),
      "expected number of inputs between 1 and 2 but got 0 inputs for model 'optional'")

# L0_shared_memory and L0_grpc: CUDA without a name over gRPC, system register with no name,
# a region registered twice, an input region of the wrong size, an offset past the region.
fails("gRPC: CUDA shared memory with no name", lambda: grpc.register_cuda_shared_memory("", b"", 0, 0),
      "failed to register CUDA shared memory region: '', GPUs not supported")
error_of("a system region registered with no name", 400, "POST", "/v2/systemsharedmemory/register",
         json.dumps({"key": "/k", "offset": 0, "byte_size": 8}).encode(), "'region name' is necessary to register system shared memory region")
key = f"/corral_wording_{os.getpid()}"
region = shm.create_shared_memory_region("r", key, 64)
try:
    grpc.register_system_shared_memory("r", key, 64)
    try:
        grpc.register_system_shared_memory("r", key, 64)
        check("a region registered twice fails", False)
    except InferenceServerException as e:
        check("gRPC: a region registered twice is ALREADY_EXISTS", e.status() == "StatusCode.ALREADY_EXISTS"
              and "shared memory region 'r' already in manager" in e.message(), e)
    tensor = tgrpc.InferInput("INPUT0", [1, 8], "FP32")
    tensor.set_shared_memory("r", 64)
    fails("an input region of another size", lambda: grpc.infer("ident", [tensor]),
          "input byte size mismatch for input 'INPUT0' for model 'ident'. Expected 32, got 64")
    tensor = thttp.InferInput("INPUT0", [1, 8], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 8), dtype=np.float32))
    output = thttp.InferRequestedOutput("OUTPUT0", binary_data=True)
    output.set_shared_memory("r", 32, offset=2**64 - 32)
    fails("HTTP: an output offset past the region", lambda: http.infer("ident", [tensor], outputs=[output]),
          "Invalid offset for shared memory region: 'r'")
finally:
    grpc.unregister_system_shared_memory()
    shm.destroy_shared_memory_region(region)

# L0_http, test_descriptive_status_code: a second call while the queue of one is full.
data = np.ones(8, dtype=np.float32).tobytes()
first = {}


def first_call():
    first["answer"] = raw("POST", "/v2/models/queue/infer", data, {"Inference-Header-Content-Length": "0"})


thread = threading.Thread(target=first_call)
thread.start()
time.sleep(0.5)
error_of("a call past the queue's one place", 503, "POST", "/v2/models/queue/infer", data,
         "[request id: <id_unknown>] Exceeds maximum queue size", {"Inference-Header-Content-Length": "0"})
thread.join()
check("the call that held the place is answered", first["answer"][0] == 200, first)


async def with_asyncio():
    """The asyncio clients (Triton's python_http_aio_test / python_grpc_aio_test ask this way):
    a classification past the limit, and each protocol's restriction, in Triton's words."""
    import tritonclient.grpc.aio as agrpc
    import tritonclient.http.aio as ahttp

    async def fails_async(what, call, text):
        try:
            await call
            check(what, False, "no error")
        except InferenceServerException as e:
            check(f"{what}: {e.message()[:100]}", text in e.message(), e.message())

    clients = (("asyncio HTTP", ahttp, ahttp.InferenceServerClient(HTTP)),
               ("asyncio gRPC", agrpc, agrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")))
    for how, module, client in clients:
        tensor = module.InferInput("INPUT0", [1, 1000001], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 1000001), dtype=np.float32))
        wanted = module.InferRequestedOutput("OUTPUT0", class_count=5)
        await fails_async(f"{how}: a classification of a row past a million elements",
                          client.infer("ident", [tensor], outputs=[wanted]), "classification output tensor too large")
    (_, _, ahttp_client), (_, _, agrpc_client) = clients
    await fails_async("asyncio HTTP: the restricted repository index without its header",
                      ahttp_client.get_model_repository_index(), "This API is restricted, expecting header 'admin-key'")
    await fails_async("asyncio gRPC: restricted statistics without their header",
                      agrpc_client.get_inference_statistics("ident"),
                      "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'")
    stats = await agrpc_client.get_inference_statistics("ident", headers={"triton-grpc-protocol-infer-key": "infer-value"})
    check("asyncio gRPC: statistics with their header", stats is not None)
    for _, _, client in clients:
        await client.close()


asyncio.run(with_asyncio())
print("all checks passed")
