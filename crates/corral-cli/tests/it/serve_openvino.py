"""Models on OpenVINO through `corral serve` with tritonclient (HTTP binary, HTTP JSON, gRPC),
on the repository of openvino_models.py: each answer agrees with onnxruntime's on the ONNX
source, within |a - b| <= 1e-4 + 1e-3 |b|.

usage: serve_openvino.py HTTP_PORT GRPC_PORT REPO
"""

import os
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from checks import check

http_port, grpc_port, repo = sys.argv[1:4]
http = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
session = ort.InferenceSession(os.path.join(repo, "reference.onnx"), providers=["CPUExecutionProvider"])
name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
x = np.random.default_rng(3).random((2, 3, 48, 192), dtype=np.float32)
expected = session.run(None, {name_in: x})[0]

for model in ("ir", "picked"):
    for way, module, client, binary in (("HTTP binary", thttp, http, True), ("HTTP JSON", thttp, http, False),
                                        ("gRPC", tgrpc, grpc, True)):
        i = module.InferInput(name_in, list(x.shape), "FP32")
        if module is thttp:
            i.set_data_from_numpy(x, binary_data=binary)
            out = [module.InferRequestedOutput(name_out, binary_data=binary)]
        else:
            i.set_data_from_numpy(x)
            out = [module.InferRequestedOutput(name_out)]
        y = client.infer(model, [i], outputs=out).as_numpy(name_out)
        worst = float(np.max(np.abs(y - expected) - 1e-3 * np.abs(expected))) if y.shape == expected.shape else None
        check(f"{model} over {way} agrees with onnxruntime", worst is not None and worst <= 1e-4, (y.shape, worst))
print("all checks passed")
