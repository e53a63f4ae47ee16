"""The peer for bench/serve.py: a Python KServe server (the `kserve` package) whose model class
calls onnxruntime (one session with every CPU's thread). KServe serves no model-config route,
which perf_analyzer calls first, so this adds one to its REST app and its gRPC server.

usage: kserve_peer.py NAME MODEL.onnx HTTP_PORT GRPC_PORT
"""

import os
import sys

name, path, http_port, grpc_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
del sys.argv[1:]  # kserve parses the command line when its server module is imported

import logging

import grpc
import kserve
import numpy as np
import onnxruntime
from kserve import InferOutput, InferResponse
from kserve.model_server import app
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

logging.disable(logging.INFO)  # its per-request logs would cost it throughput
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = os.cpu_count()
session = onnxruntime.InferenceSession(path, options)
TYPES = {"tensor(float)": ("FP32", "TYPE_FP32", 11), "tensor(int32)": ("INT32", "TYPE_INT32", 8)}


def tensors(values):
    return [(v.name, TYPES[v.type], [d if isinstance(d, int) else 1 for d in v.shape]) for v in values]


INPUTS, OUTPUTS = tensors(session.get_inputs()), tensors(session.get_outputs())


class OnnxModel(kserve.Model):
    def __init__(self):
        super().__init__(name)
        self.ready = True

    def get_input_types(self):
        return [{"name": t[0], "datatype": t[1][0], "shape": t[2]} for t in INPUTS]

    def get_output_types(self):
        return [{"name": t[0], "datatype": t[1][0], "shape": t[2]} for t in OUTPUTS]

    def predict(self, payload, headers=None):
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        # perf_analyzer asks REST for binary outputs; KServe needs to be told to honour that.
        binary = bool(getattr(payload, "use_binary_outputs", False)) or any(
            bool(o.binary_data) for o in (getattr(payload, "request_outputs", None) or []))
        outputs = []
        for (out_name, (kserve_type, _, _), _), y in zip(OUTPUTS, session.run(None, feeds)):
            out = InferOutput(name=out_name, shape=list(y.shape), datatype=kserve_type)
            out.set_data_from_numpy(np.ascontiguousarray(y), binary_data=binary)
            outputs.append(out)
        return InferResponse(model_name=name, infer_outputs=outputs, response_id=payload.id, use_binary_outputs=binary)


@app.get("/v2/models/{model}/config")
def config(model: str):
    entry = lambda t: {"name": t[0], "data_type": t[1][1], "dims": t[2]}  # noqa: E731
    return {"name": name, "platform": "onnxruntime_onnx", "max_batch_size": 0,
            "input": [entry(t) for t in INPUTS], "output": [entry(t) for t in OUTPUTS]}


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def config_response():
    """inference.ModelConfigResponse, encoded by hand (kserve and tritonclient protos clash)."""
    def tensor(t, dims_field):
        packed = b"".join(varint(d) for d in t[2])
        return field(1, 2, t[0].encode()) + field(2, 0, varint(t[1][2])) + field(dims_field, 2, packed)
    body = field(1, 2, name.encode()) + field(2, 2, b"onnxruntime_onnx") + field(4, 0, varint(0))
    body += b"".join(field(5, 2, tensor(t, 4)) for t in INPUTS)
    body += b"".join(field(6, 2, tensor(t, 3)) for t in OUTPUTS)
    return field(1, 2, body)


CONFIG = config_response()
register = grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server


def with_config(servicer, server):
    register(servicer, server)
    async def model_config(request, context):
        return CONFIG

    handler = grpc.unary_unary_rpc_method_handler(model_config)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelConfig": handler}),))


grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server = with_config
import kserve.protocol.grpc.server as grpc_server  # noqa: E402

grpc_server.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server = with_config
# Its best setting here: no per-request logging, gRPC threads for every CPU.
kserve.ModelServer(
    http_port=http_port, grpc_port=grpc_port, enable_latency_logging=False, max_threads=max(4, os.cpu_count())
).start([OnnxModel()])
