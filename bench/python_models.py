"""Triton Python models' overhead through `corral serve` (issue 31's figure), one run: a
`model.py` that returns its input against an ONNX Identity of the same shapes, both served by
one `corral serve` on cpu, called by tritonclient over gRPC at concurrency 1, FP32 [1,16] and
[1,3,224,224]; ROUNDS alternating rounds (default 5) of CALLS calls each (default 400), the
median of the rounds' p50s; the difference is what a Python stub adds to a call.

Where things run: both models on the last core (`--visible-cores`; they take turns, never
running at once), the client pinned to the first CPU. Left to the scheduler, the client and
the server's network threads follow the wake-ups onto the CPU of the model called last, and
the measured difference is then mostly the client's interference with the stub on that CPU
(on 2 CPUs: +290 µs unpinned against +145 µs pinned at [1,16], in one run), not the stub.
The server's own view, the mean request time from its statistics, is printed beside.

usage: python_models.py [ROUNDS] [CALLS]   (run by bench/python_models.sh)
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def served(port, model):
    """The model's successful requests so far: (count, ns) from its statistics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/stats") as answer:
        success = json.load(answer)["model_stats"][0]["inference_stats"]["success"]
    return success["count"], success["ns"]


def mean_us(before, after):
    return (after[1] - before[1]) / max(1, after[0] - before[0]) / 1000


def main():
    port = 18700
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": "onnxruntime",
           "CORRAL_PYTHON": f"{ROOT}/.venv/bin/python"}
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("the benchmark needs 2 CPUs: one for the client, one for the models")
    command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repository(), "--device", "cpu",
               "--visible-cores", str(len(cpus) - 1),
               "--http-port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, server, seconds=120)
        os.sched_setaffinity(0, {cpus[0]})  # the client only (the server started before)
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{port + 1}")
        for label, shape in SHAPES.items():
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            py, onnx = [], []
            before = {m: served(port, m) for m in (f"py_{label}", f"onnx_{label}")}
            for _ in range(ROUNDS):
                py.append(p50(client, f"py_{label}", x))
                onnx.append(p50(client, f"onnx_{label}", x))
            py_s, onnx_s = (mean_us(before[m], served(port, m)) for m in (f"py_{label}", f"onnx_{label}"))
            py_m, onnx_m = statistics.median(py), statistics.median(onnx)
            print(f"FP32 {shape}: model.py p50 {py_m:.0f} us, ONNX Identity p50 {onnx_m:.0f} us: "
                  f"Python adds {py_m - onnx_m:.0f} us (rounds: py {[round(v) for v in py]}, onnx {[round(v) for v in onnx]}); "
                  f"server-side mean request {py_s:.0f} vs {onnx_s:.0f} us: +{py_s - onnx_s:.0f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
