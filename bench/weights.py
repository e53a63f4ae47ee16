"""Weights once per process: `corral serve`'s memory with 1, 2 and 4 instances of a model.

For light_resnet50 (its weights are ConstantOfShape nodes, folded at load) and rapidocr's
recogniser (PP-OCRv4 rec), on ONNX Runtime: `corral serve --device cpu` with the model's
instances at starts "0", "0,1" and "0,0,1,1" (instances per core as needed on 2 cores), in
two ways side by side:
  shared   the default: every one-core instance runs on the model's one session
  own      CORRAL_ORT_SHARED_SESSION=0: a session per instance (corral before this change)
  openvino the model on OpenVINO: a compiled model per instance (one compiled model shared
           by instances serializes their calls: two threads on two CPUs ran inception_v1 at
           the rate of one), 1 and 2 instances (it refuses the elastic session's 2 cores)
perf_analyzer drives each server over HTTP at concurrency 16 until every instance has
answered at least 100 calls (read from corral_instance_executions_total), then the server's
RSS is read (VmRSS). The table gives RSS, what each added session cost, that cost as a share
of the model's weights (the bytes of its initializers once ONNX Runtime has folded its
constants: the model saved by onnxruntime at the basic optimization level), and the c16
throughput of the last window.

usage: bench/weights.py [SECONDS_PER_WINDOW]   (run through bench/weights.sh)
"""

import csv
import glob
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
MODELS = {
    "resnet50": (f"{SITE}/onnx/backend/test/data/light/light_resnet50.onnx", "gpu_0/data_0", [1, 3, 224, 224]),
    "ocr_rec": (f"{SITE}/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "x", [1, 3, 48, 320]),
}
# sessions: (starts, elastic)
STARTS = {1: ("0", "false"), 2: ("0,1", "false"), 3: ("0,1", "true")}
# mode: (environment, engine)
MODES = {"shared": ({}, "onnxruntime"), "own": ({"CORRAL_ORT_SHARED_SESSION": "0"}, "onnxruntime"),
         "openvino": ({}, "openvino")}


def weights_mb(path):
    """The bytes of the model's initializers after constant folding, in MB."""
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = f"{folder}/folded.onnx"
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer) / 2**20


def rss_mb(pid):
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def serve(model, placement, env, port, engine="onnxruntime"):
    repo = tempfile.mkdtemp()
    if model is not None:
        path = MODELS[model][0]
        os.makedirs(f"{repo}/{model}/1")
        os.symlink(path, f"{repo}/{model}/1/model.onnx")
        with open(f"{repo}/{model}/config.pbtxt", "w") as f:
            f.write(f'name: "{model}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
                    f'parameters {{ key: "corral.engine" value {{ string_value: "{engine}" }} }}\n'
                    f'parameters {{ key: "corral.starts" value {{ string_value: "{placement[0]}" }} }}\n'
                    f'parameters {{ key: "corral.elastic" value {{ string_value: "{placement[1]}" }} }}\n')
    command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repo, "--device", "cpu",
               "--http-port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
    env = {**os.environ, **env, "CORRAL_LOCK_DIR": tempfile.mkdtemp()}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def executions(port, model):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 2}/metrics").read().decode()
    pattern = rf'corral_instance_executions_total{{model="{model}",version="1",instance="[^"]*"}} (\S+)'
    return [float(v) for v in re.findall(pattern, text)]


def drive(model, port):
    """c16 windows until every instance has answered 100 calls; the last window's rate."""
    _, name, shape = MODELS[model]
    while True:
        with tempfile.NamedTemporaryFile(suffix=".csv") as out:
            command = [PERF, "-m", model, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                       "--shape", f"{name}:{','.join(map(str, shape))}", "--concurrency-range", "16",
                       "--measurement-interval", str(int(SECONDS * 1000)), "--stability-percentage", "50",
                       "--max-trials", "3", "-f", out.name]
            result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART},
                                    capture_output=True, text=True)
            rate = float(next(csv.DictReader(open(out.name)))["Inferences/Second"]) \
                if result.returncode == 0 else None
        counts = executions(port, model)
        if counts and min(counts) >= 100 and rate is not None:
            return rate


def main():
    print(f"corral serve --device cpu, {len(os.sched_getaffinity(0))} CPUs, onnxruntime; "
          f"c16 windows of {SECONDS:.0f} s until every instance has answered >= 100 calls")
    empty = serve(None, None, {}, 8400)
    base = rss_mb(empty.pid)
    empty.kill()
    empty.wait()
    print(f"server with no model: {base:.0f} MB")
    print(f"{'model':<10}{'mode':<8}{'sess':>5}{'RSS MB':>9}{'+/sess MB':>11}{'of weights':>12}{'c16 /s':>9}")
    port = 8410
    for model in MODELS:
        rows = {}
        for count, placement in STARTS.items():
            for mode, (env, engine) in MODES.items():
                if engine == "openvino" and placement[1] == "true":
                    continue  # OpenVINO refuses the elastic session's two cores
                proc = serve(model, placement, env, port, engine)
                try:
                    rate = drive(model, port)
                    rows[mode, count] = (rss_mb(proc.pid), rate)
                finally:
                    proc.kill()
                    proc.wait()
                port += 10
        weights = weights_mb(MODELS[model][0])
        print(f"{model}: {weights:.1f} MB of weights")
        for mode in MODES:
            one = rows[mode, 1][0]
            for count in STARTS:
                if (mode, count) not in rows:
                    continue
                rss, rate = rows[mode, count]
                added = (rss - one) / (count - 1) if count > 1 else 0.0
                share = f"{added / weights:.0%}" if count > 1 else ""
                print(f"{model:<10}{mode:<8}{count:>5}{rss:>9.0f}{added:>11.1f}{share:>12}{rate:>9.1f}", flush=True)
        ratio = rows["shared", 2][1] / rows["own", 2][1]
        print(f"{model}: c16 throughput with 2 instances, shared / own: {ratio:.3f}")


if __name__ == "__main__":
    main()
