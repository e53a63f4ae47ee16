"""Triton's extensions side by side on one corral serve: perf_analyzer at concurrency 16 on
light_squeezenet (a 1x3x224x224 FP32 input, 602 KB, resnet50's input size) over plain HTTP
(binary tensors), HTTP with system shared memory, plain gRPC, gRPC streaming and gRPC with
system shared memory. For each: throughput, p50, p99, and where the server's time went per
request (Triton's statistics, before and after): decode (compute_input: request to tensors,
shared-memory reads included), queue, compute, encode (compute_output).

usage: bench/extensions.py [SECONDS_PER_POINT]   (run through bench/extensions.sh)
"""

import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
CPUS = sorted(os.sched_getaffinity(0))
MODEL = f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx"
HTTP, GRPC = 18300, 18301
CASES = [
    ("HTTP", "http", HTTP, []),
    ("HTTP + shared memory", "http", HTTP, ["--shared-memory", "system"]),
    ("gRPC", "grpc", GRPC, []),
    ("gRPC streaming", "grpc", GRPC, ["--streaming"]),
    ("gRPC + shared memory", "grpc", GRPC, ["--shared-memory", "system"]),
]


def stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}/v2/models/squeezenet/stats") as r:
        s = json.load(r)["model_stats"][0]["inference_stats"]
    return {k: (s[k]["count"], s[k]["ns"]) for k in ("success", "compute_input", "queue", "compute_infer", "compute_output")}


def perf(protocol, port, extra):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", "squeezenet", "-i", protocol, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--concurrency-range", "16", "--measurement-interval", str(int(SECONDS * 1000)),
                   "--stability-percentage", "50", "--max-trials", "10", "--percentile", "99", "-f", out.name, *extra]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            return None, (result.stdout + result.stderr)[-300:]
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000), ""


def main():
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/squeezenet/1")
    os.symlink(MODEL, f"{repo}/squeezenet/1/model.onnx")
    with open(f"{repo}/squeezenet/config.pbtxt", "w") as f:
        f.write('name: "squeezenet"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
                f"instance_group [ {{ count: {len(CPUS)}, kind: KIND_CPU }} ]\n")
    server = subprocess.Popen(
        [f"{ROOT}/target/release/corral", "serve", "--model-repository", repo, "--device", "cpu",
         "--http-port", str(HTTP), "--grpc-port", str(GRPC), "--metrics-port", str(HTTP + 2)],
        env={**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp()}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{HTTP}/v2/health/ready").status == 200:
                    break
            except Exception:
                time.sleep(0.1)
        print(f"{len(CPUS)} CPUs; squeezenet, concurrency 16, {SECONDS:.0f} s windows; per request: decode / queue / "
              "compute / encode in microseconds, and decode's share of the server's time")
        print(f"{'case':<22}{'infer/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'decode':>8}{'queue':>8}{'compute':>9}{'encode':>8}"
              f"{'decode %':>9}")
        for name, protocol, port, extra in CASES:
            before = stats()
            figures, why = perf(protocol, port, extra)
            after = stats()
            if figures is None:
                print(f"{name:<22}  failed: {why.strip()[-200:]}", flush=True)
                continue
            d = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}
            n = max(d["success"][0], 1)
            us = lambda k: d[k][1] / n / 1000  # noqa: E731
            share = d["compute_input"][1] / max(d["success"][1], 1) * 100
            rate, p50, p99 = figures
            print(f"{name:<22}{rate:>9.1f}{p50:>8.2f}{p99:>8.2f}{us('compute_input'):>8.0f}{us('queue'):>8.0f}"
                  f"{us('compute_infer'):>9.0f}{us('compute_output'):>8.0f}{share:>8.1f}%", flush=True)
    finally:
        server.terminate()
        server.wait()


main()
