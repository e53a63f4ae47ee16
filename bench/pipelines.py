"""Issue 31's pipeline figures through one `corral serve` (release, cpu, every core), one run:

  overhead  a model.py returning its input vs an ONNX Identity, FP32 [1,3,224,224], gRPC c1 p50
  bls       a model.py calling squeezenet through BLS vs squeezenet called directly: c1 p50
            (goal: <= the overhead + 60 us) and c16 throughput (goal: >= 0.95 of direct)
  ensemble  Python preprocessing (numpy, uint8 HWC -> FP32 NCHW) then squeezenet, at c16:
            throughput against 0.9 x cores / (t_pre + t_squeezenet), each t the step's mean
            compute from the server's statistics of the same run, and against a client calling
            the two steps back to back (goal >= 1.0); c1 p50 against the steps' summed mean
            compute + the Identity overhead + 0.3 ms
  scaling   a CPU-bound model.py (~20 ms of elementwise numpy), one instance per core vs one
            instance, perf_analyzer at c4: throughput ratio (goal >= 0.9 x cores)
  memory    PSS (smaps_rollup) of the server plus its stubs, a Python model holding 64 MiB it
            made in initialize, 2 instances vs 1 (report)

c16 and c4 throughputs are perf_analyzer's (gRPC); the back-to-back client and the ensemble it
is compared with are the same Python client (16 threads) so that both pay its cost. Rounds
alternate; the medians are printed.

usage: pipelines.py [ROUNDS] [SECONDS]   (run by bench/pipelines.sh)
"""

import csv
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_models import MODEL_PY as IDENTITY_PY, ONNX as IDENTITY_ONNX  # noqa: E402
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
CORES = len(os.sched_getaffinity(0))
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
SQUEEZENET = f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx"
IMAGE = [1, 3, 224, 224]

BLS_PY = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            answer = pb_utils.InferenceRequest(
                model_name="squeezenet", inputs=[pb_utils.get_input_tensor_by_name(request, "data_0")],
                requested_output_names=["softmaxout_1"]).exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
            else:
                responses.append(pb_utils.InferenceResponse(answer.output_tensors()))
        return responses
'''
PRE_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            image = pb_utils.get_input_tensor_by_name(r, "IMAGE").as_numpy()
            data = ((image.transpose(2, 0, 1).astype(np.float32) / 255.0 - MEAN) / STD)[None]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("DATA", data)]))
        return out
'''
BUSY_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.work = np.random.default_rng(0).random(1 << 20, dtype=np.float32)
        self.rounds = ROUNDS_HERE

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            acc = self.work.copy()
            for _ in range(self.rounds):
                np.multiply(acc, 0.999, out=acc)
                np.add(acc, 0.001, out=acc)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", x + float(acc[0] * 0))]))
        return out
'''
MEMORY_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.table = np.ones(16 << 20, dtype=np.float32)  # 64 MiB made at initialize

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
                for r in requests]
'''


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def io(inputs, outputs):
    tensor = lambda t: f'{{ name: "{t[0]}", data_type: {t[1]}, dims: [ {", ".join(map(str, t[2]))} ] }}'
    return (f"input [ {', '.join(tensor(t) for t in inputs)} ]\n"
            f"output [ {', '.join(tensor(t) for t in outputs)} ]\n")


def python_model(repo, name, code, inputs, outputs, count=1):
    write(f"{repo}/{name}/1/model.py", code)
    write(f"{repo}/{name}/config.pbtxt", f'backend: "python"\n{io(inputs, outputs)}'
          f"instance_group [ {{ count: {count}, kind: KIND_CPU }} ]\n")


def busy_rounds():
    """Rounds of the busy loop that take about 20 ms here."""
    work = np.random.default_rng(0).random(1 << 20, dtype=np.float32)
    acc, started = work.copy(), time.perf_counter()
    for _ in range(20):
        np.multiply(acc, 0.999, out=acc)
        np.add(acc, 0.001, out=acc)
    per_round = (time.perf_counter() - started) / 20
    return max(1, round(0.020 / per_round))


def repository():
    repo = tempfile.mkdtemp()
    image = ("x", "TYPE_FP32", IMAGE)
    python_model(repo, "py_identity", IDENTITY_PY, [image], [("y", "TYPE_FP32", IMAGE)])
    os.makedirs(f"{repo}/onnx_identity/1")
    subprocess.run([f"{ROOT}/.venv/bin/python", "-c", IDENTITY_ONNX, f"{repo}/onnx_identity/1/model.onnx",
                    ",".join(map(str, IMAGE))], check=True)
    os.makedirs(f"{repo}/squeezenet/1")
    os.symlink(SQUEEZENET, f"{repo}/squeezenet/1/model.onnx")
    data, prob = ("data_0", "TYPE_FP32", IMAGE), ("softmaxout_1", "TYPE_FP32", [1, 1000, 1, 1])
    write(f"{repo}/squeezenet/config.pbtxt", f'platform: "onnxruntime_onnx"\n{io([data], [prob])}'
          f"instance_group [ {{ count: {CORES}, kind: KIND_CPU }} ]\n")
    python_model(repo, "bls", BLS_PY, [data], [prob], count=CORES)
    python_model(repo, "preprocess", PRE_PY, [("IMAGE", "TYPE_UINT8", [224, 224, 3])],
                 [("DATA", "TYPE_FP32", IMAGE)], count=CORES)
    write(f"{repo}/classify/config.pbtxt", 'platform: "ensemble"\n'
          + io([("IMAGE", "TYPE_UINT8", [224, 224, 3])], [("PROB", "TYPE_FP32", [1, 1000, 1, 1])])
          + 'ensemble_scheduling { step [\n'
          '  { model_name: "preprocess" model_version: -1 input_map { key: "IMAGE" value: "IMAGE" }'
          ' output_map { key: "DATA" value: "pre" } },\n'
          '  { model_name: "squeezenet" model_version: -1 input_map { key: "data_0" value: "pre" }'
          ' output_map { key: "softmaxout_1" value: "PROB" } } ] }\n')
    busy = BUSY_PY.replace("ROUNDS_HERE", str(busy_rounds()))
    one = ("x", "TYPE_FP32", [1])
    python_model(repo, "busy_1", busy, [one], [("y", "TYPE_FP32", [1])], count=1)
    python_model(repo, "busy_n", busy, [one], [("y", "TYPE_FP32", [1])], count=CORES)
    python_model(repo, "memory_1", MEMORY_PY, [one], [("y", "TYPE_FP32", [1])], count=1)
    python_model(repo, "memory_2", MEMORY_PY, [one], [("y", "TYPE_FP32", [1])], count=2)
    return repo


def serve(repo, port, models):
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": "onnxruntime",
           "CORRAL_PYTHON": f"{ROOT}/.venv/bin/python"}
    command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repo, "--device", "cpu",
               "--http-port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2),
               "--model-control-mode", "explicit"] + [a for m in models for a in ("--load-model", m)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, server, seconds=180)
    return server


def p50(client, model, name, x, calls=300):
    inputs = [tgrpc.InferInput(name, list(x.shape), "UINT8" if x.dtype == np.uint8 else "FP32")]
    inputs[0].set_data_from_numpy(x)
    for _ in range(20):
        client.infer(model, inputs)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.infer(model, inputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def perf(port, model, name, shape, datatype, concurrency):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", model, "-i", "grpc", "-u", f"127.0.0.1:{port + 1}", "--input-data", "random",
                   "--shape", f"{name}:{','.join(map(str, shape))}", "--concurrency-range", str(concurrency),
                   "--measurement-interval", str(int(SECONDS * 1000)), "--stability-percentage", "50",
                   "--max-trials", "4", "-f", out.name]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"perf_analyzer {model}: {result.stdout[-400:]}{result.stderr[-400:]}")
        return float(next(csv.DictReader(open(out.name)))["Inferences/Second"])


def stats(port, model):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/stats") as r:
        s = json.load(r)["model_stats"][0]["inference_stats"]
    return int(s["compute_infer"]["count"]), int(s["compute_infer"]["ns"])


def chained_throughput(port, image, seconds):
    """16 threads, each calling preprocess then squeezenet; and the same threads calling the
    ensemble: calls per second of each."""
    def run(chain):
        done, stop = [0], time.monotonic() + seconds
        lock = threading.Lock()

        def worker():
            client = tgrpc.InferenceServerClient(f"127.0.0.1:{port + 1}")
            given = tgrpc.InferInput("IMAGE", [224, 224, 3], "UINT8")
            given.set_data_from_numpy(image)
            while time.monotonic() < stop:
                if chain:
                    data = client.infer("preprocess", [given]).as_numpy("DATA")
                    x = tgrpc.InferInput("data_0", IMAGE, "FP32")
                    x.set_data_from_numpy(data)
                    client.infer("squeezenet", [x])
                else:
                    client.infer("classify", [given])
                with lock:
                    done[0] += 1
        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done[0] / seconds
    return run(True), run(False)


def pss(pid):
    """PSS in MiB of `pid` and every process below it."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main():
    print(f"{CORES} CPUs, {ROUNDS} rounds, {SECONDS:.0f} s per perf_analyzer point")
    repo = repository()
    port = 18900
    server = serve(repo, port, ["py_identity", "onnx_identity", "squeezenet", "bls", "preprocess", "classify",
                                "busy_1", "busy_n"])
    try:
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{port + 1}")
        x = np.random.default_rng(0).random(IMAGE, dtype=np.float32)
        image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        rows = {k: [] for k in ("py", "onnx", "bls", "direct", "ens_c1", "bls_c16", "direct_c16", "ens_c16",
                                "chain_py", "ens_py", "busy_1", "busy_n", "t_pre", "t_sq")}
        for _ in range(ROUNDS):
            rows["py"].append(p50(client, "py_identity", "x", x))
            rows["onnx"].append(p50(client, "onnx_identity", "x", x))
            rows["bls"].append(p50(client, "bls", "data_0", x))
            rows["direct"].append(p50(client, "squeezenet", "data_0", x))
            rows["ens_c1"].append(p50(client, "classify", "IMAGE", image))
            rows["bls_c16"].append(perf(port, "bls", "data_0", IMAGE, "FP32", 16))
            rows["direct_c16"].append(perf(port, "squeezenet", "data_0", IMAGE, "FP32", 16))
            before = {m: stats(port, m) for m in ("preprocess", "squeezenet")}
            rows["ens_c16"].append(perf(port, "classify", "IMAGE", [224, 224, 3], "UINT8", 16))
            after = {m: stats(port, m) for m in ("preprocess", "squeezenet")}
            mean = lambda m: (after[m][1] - before[m][1]) / max(1, after[m][0] - before[m][0]) / 1e6
            rows["t_pre"].append(mean("preprocess"))
            rows["t_sq"].append(mean("squeezenet"))
            chain, ens = chained_throughput(port, image, SECONDS)
            rows["chain_py"].append(chain)
            rows["ens_py"].append(ens)
            rows["busy_1"].append(perf(port, "busy_1", "x", [1], "FP32", 4))
            rows["busy_n"].append(perf(port, "busy_n", "x", [1], "FP32", 4))
        m = {k: statistics.median(v) for k, v in rows.items()}
        overhead = m["py"] - m["onnx"]
        print(f"overhead  model.py {m['py']:.0f} us vs ONNX Identity {m['onnx']:.0f} us: +{overhead:.0f} us "
              f"(goal <= 100)")
        print(f"bls       c1 p50 {m['bls']:.0f} us vs direct {m['direct']:.0f} us: +{m['bls'] - m['direct']:.0f} us "
              f"(goal <= overhead + 60 = {overhead + 60:.0f}); c16 {m['bls_c16']:.1f}/s vs {m['direct_c16']:.1f}/s: "
              f"{m['bls_c16'] / m['direct_c16']:.3f} (goal >= 0.95)")
        bound = 0.9 * CORES / ((m["t_pre"] + m["t_sq"]) / 1e3)
        steps_c1 = (m["t_pre"] + m["t_sq"]) * 1e3
        print(f"ensemble  c16 {m['ens_c16']:.1f}/s vs 0.9 x {CORES} / (t_pre {m['t_pre']:.2f} ms + t_squeezenet "
              f"{m['t_sq']:.2f} ms) = {bound:.1f}/s: {m['ens_c16'] / bound:.3f} of it (goal >= 1.0); "
              f"Python client c16: ensemble {m['ens_py']:.1f}/s vs the two steps back to back {m['chain_py']:.1f}/s: "
              f"{m['ens_py'] / m['chain_py']:.3f} (goal >= 1.0); c1 p50 {m['ens_c1']:.0f} us vs steps' mean compute "
              f"{steps_c1:.0f} + overhead {overhead:.0f} + 300 = {steps_c1 + overhead + 300:.0f} us")
        print(f"scaling   busy model.py (~20 ms) c4: {CORES} instances {m['busy_n']:.1f}/s vs 1 instance "
              f"{m['busy_1']:.1f}/s: {m['busy_n'] / m['busy_1']:.2f}x (goal >= {0.9 * CORES:.1f})")
        print("rounds    " + "; ".join(f"{k} {[round(x, 1) for x in v]}" for k, v in rows.items()))
    finally:
        server.terminate()
        server.wait()
    for count in (1, 2):
        server = serve(repo, port, [f"memory_{count}"])
        try:
            time.sleep(2)
            print(f"memory    a model.py holding 64 MiB, {count} instance(s): server + stubs PSS {pss(server.pid):.0f} MiB")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
