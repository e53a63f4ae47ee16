"""corral serve against its ceiling and a Python KServe peer, one table, one run.

For light_squeezenet and magika, the same fixed input (zeros) everywhere:
  ceiling  raw onnxruntime, one single-thread process pinned to each CPU, aggregate inferences/s
           (measured before and after each model's rows; their mean)
  corral   perf_analyzer -> corral serve (release; one single-core replica per core), HTTP with
           binary tensors and gRPC, concurrency 1, 2, 4, 16: throughput, p50, p99
  elastic  the same with elastic instances (corral.elastic: a lone call runs on every idle core)
  kserve   the same against bench/kserve_peer.py (kserve + onnxruntime, all CPUs' threads)
The three servers run side by side and take turns at each point (protocol, concurrency).

usage: bench/serve.py [SECONDS_PER_POINT]   (run through bench/serve.sh)
"""

import csv
import glob
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
CLIENTS = f"{ROOT}/.venv-clients/bin/python"
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
CPUS = sorted(os.sched_getaffinity(0))
MODELS = {
    "squeezenet": (f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx", "data_0", [1, 3, 224, 224], "FP32"),
    "magika": (f"{SITE}/magika/models/standard_v3_3/model.onnx", "bytes", [1, 2048], "INT32"),
}
CONCURRENCY = [1, 2, 4, 16]

CEILING_WORKER = """
import sys, time, numpy as np, onnxruntime as ort
path, name, shape, dtype, seconds = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3].split(',')], sys.argv[4], float(sys.argv[5])
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(path, o)
x = np.zeros(shape, dtype=np.float32 if dtype == 'FP32' else np.int32)
for _ in range(5): s.run(None, {name: x})
n, end = 0, time.perf_counter() + seconds
while time.perf_counter() < end:
    s.run(None, {name: x}); n += 1
print(n / seconds)
"""


def ceiling(model):
    path, name, shape, dtype = MODELS[model]
    procs = [
        subprocess.Popen(["taskset", "-c", str(cpu), f"{ROOT}/.venv/bin/python", "-c", CEILING_WORKER, path, name,
                          ",".join(map(str, shape)), dtype, str(SECONDS)], stdout=subprocess.PIPE, text=True)
        for cpu in CPUS
    ]
    return sum(float(p.communicate()[0]) for p in procs)


def perf(model, protocol, port, concurrency, seconds=SECONDS):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        _, name, shape, _ = MODELS[model]
        command = [PERF, "-m", model, "-i", protocol, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--shape", f"{name}:{','.join(map(str, shape))}",
                   "--concurrency-range", str(concurrency), "--measurement-interval", str(int(seconds * 1000)),
                   "--stability-percentage", "25", "--max-trials", "6", "--percentile", "99", "-f", out.name]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            why = result.stdout[-300:] + result.stderr[-300:]
            if "stable" in why and seconds == SECONDS:
                # A noisy neighbour moved the windows apart: once more with windows twice as long.
                return perf(model, protocol, port, concurrency, seconds * 2)
            return None, why
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000), ""


def run_server(kind, model, http_port, grpc_port):
    path = MODELS[model][0]
    if kind in ("corral", "elastic"):
        repo = tempfile.mkdtemp()
        os.makedirs(f"{repo}/{model}/1")
        os.symlink(path, f"{repo}/{model}/1/model.onnx")
        elastic = "true" if kind == "elastic" else "false"
        with open(f"{repo}/{model}/config.pbtxt", "w") as f:
            f.write(f'name: "{model}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
                    f"instance_group [ {{ count: {len(CPUS)}, kind: KIND_CPU }} ]\n"
                    f'parameters {{ key: "corral.elastic" value {{ string_value: "{elastic}" }} }}\n')
        command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repo, "--device", "cpu",
                   "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(http_port + 2)]
        env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp()}
    else:
        command = [CLIENTS, f"{ROOT}/bench/kserve_peer.py", model, path, str(http_port), str(grpc_port)]
        env = dict(os.environ)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(http_port, proc)
    return proc


def main():
    print(f"{len(CPUS)} CPUs; {SECONDS:.0f} s per point; same zero input everywhere")
    print(f"{'model':<11}{'server':<8}{'proto':<6}{'conc':>5}{'infer/s':>10}{'of ceil':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for model in MODELS:
        # The machine's speed drifts over minutes: the ceiling is measured before and after the
        # model's rows, and their mean is what "of ceil" divides by.
        first = ceiling(model)
        rows = []
        # All three servers stay up (idle ones cost nothing) and take turns point by point, so
        # the machine's drift falls on each of them alike.
        servers = {kind: (port, run_server(kind, model, port, port + 1))
                   for kind, port in (("corral", 18100), ("elastic", 18300), ("kserve", 18200))}
        try:
            for protocol in ("http", "grpc"):
                for c in CONCURRENCY:
                    for kind, (port, _) in servers.items():
                        figures, why = perf(model, protocol, port + (protocol == "grpc"), c)
                        rows.append((kind, protocol, c, figures, why))
                        print(f"  {model} {kind} {protocol} c{c}: {figures or why.strip()[-160:]}", file=sys.stderr,
                              flush=True)
        finally:
            for _, proc in servers.values():
                proc.terminate()
                proc.wait()
        rows.sort(key=lambda row: list(servers).index(row[0]))
        last = ceiling(model)
        top = (first + last) / 2
        print(f"{model:<11}{'ceiling':<8}{'-':<6}{'-':>5}{top:>10.1f}{1.0:>9.2f}{'-':>9}{'-':>9}"
              f"   (before {first:.1f}, after {last:.1f})", flush=True)
        for kind, protocol, c, figures, why in rows:
            if figures is None:
                print(f"{model:<11}{kind:<8}{protocol:<6}{c:>5}  failed: {why.strip()[-160:]}", flush=True)
                continue
            rate, p50, p99 = figures
            print(f"{model:<11}{kind:<8}{protocol:<6}{c:>5}{rate:>10.1f}{rate / top:>9.2f}{p50:>9.2f}{p99:>9.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
