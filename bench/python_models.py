"""Triton Python models' overhead through `corral serve` (issue 31's figure), one run: a
`model.py` that returns its input against an ONNX Identity of the same shapes, both served by
one `corral serve` on cpu, called by tritonclient over gRPC at concurrency 1, FP32 [1,16] and
[1,3,224,224]; ROUNDS alternating rounds (default 5) of CALLS calls each (default 400), the
median of the rounds' p50s; the difference is what a Python stub adds to a call.

usage: python_models.py [ROUNDS] [CALLS]   (run by bench/python_models.sh)
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tritonclient.grpc as tgrpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 400
SHAPES = {"small": [1, 16], "image": [1, 3, 224, 224]}
MODEL_PY = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
                for r in requests]
'''
ONNX = '''
import sys, onnx
from onnx import helper, TensorProto
shape = [int(d) for d in sys.argv[2].split(",")]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
'''


def repository():
    repo = tempfile.mkdtemp()
    for label, shape in SHAPES.items():
        dims = ", ".join(str(d) for d in shape)
        os.makedirs(f"{repo}/py_{label}/1")
        with open(f"{repo}/py_{label}/1/model.py", "w") as f:
            f.write(MODEL_PY)
        with open(f"{repo}/py_{label}/config.pbtxt", "w") as f:
            f.write(f'backend: "python"\ninput [ {{ name: "x", data_type: TYPE_FP32, dims: [ {dims} ] }} ]\n'
                    f'output [ {{ name: "y", data_type: TYPE_FP32, dims: [ {dims} ] }} ]\n')
        os.makedirs(f"{repo}/onnx_{label}/1")
        subprocess.run([f"{ROOT}/.venv/bin/python", "-c", ONNX, f"{repo}/onnx_{label}/1/model.onnx",
                        ",".join(map(str, shape))], check=True)
    return repo


def p50(client, model, x):
    inputs = [tgrpc.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    for _ in range(20):
        client.infer(model, inputs)
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        client.infer(model, inputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main():
    port = 18700
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": "onnxruntime",
           "CORRAL_PYTHON": f"{ROOT}/.venv/bin/python"}
    command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repository(), "--device", "cpu",
               "--http-port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, server, seconds=120)
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{port + 1}")
        for label, shape in SHAPES.items():
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            py, onnx = [], []
            for _ in range(ROUNDS):
                py.append(p50(client, f"py_{label}", x))
                onnx.append(p50(client, f"onnx_{label}", x))
            py_m, onnx_m = statistics.median(py), statistics.median(onnx)
            print(f"FP32 {shape}: model.py p50 {py_m:.0f} us, ONNX Identity p50 {onnx_m:.0f} us: "
                  f"Python adds {py_m - onnx_m:.0f} us (rounds: py {[round(v) for v in py]}, onnx {[round(v) for v in onnx]})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
