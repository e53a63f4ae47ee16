"""Triton's extensions side by side on one corral serve: perf_analyzer at concurrency 16 (and 4) on
light_squeezenet (a 1x3x224x224 FP32 input, 602 KB, resnet50's input size) over plain HTTP
(binary tensors), HTTP with system shared memory, plain gRPC, gRPC streaming and gRPC with
system shared memory. For each: throughput, p50, p99, and where the server's time went per
request (Triton's statistics, before and after): decode (compute_input: request to tensors,
shared-memory reads included), queue, compute, encode (compute_output); and where the machine's
CPU time went while perf_analyzer ran: corral's workers (the pinned threads running ONNX
Runtime), corral's other threads (HTTP/gRPC, tokio), perf_analyzer, and the rest (other
processes, the kernel's own threads, idle). The ceiling (bench/serve.py's: one pinned
single-thread onnxruntime process per CPU) gives the CPU time one inference needs alone.

usage: bench/extensions.py [SECONDS_PER_POINT]   (run through bench/extensions.sh)
"""

import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import resource
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402
from serve import ceiling  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
CPUS = sorted(os.sched_getaffinity(0))
MODEL = f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx"
HTTP, GRPC = 18300, 18301
# (name, protocol, port, concurrency, perf_analyzer's extra arguments); the c4 cases show what
# going from 4 to 16 calls in flight costs, per inference, on each side.
CASES = [
    ("HTTP c4", "http", HTTP, 4, []),
    ("HTTP", "http", HTTP, 16, []),
    ("HTTP + shared memory", "http", HTTP, 16, ["--shared-memory", "system"]),
    ("gRPC c4", "grpc", GRPC, 4, []),
    ("gRPC", "grpc", GRPC, 16, []),
    ("gRPC streaming", "grpc", GRPC, 16, ["--streaming"]),
    ("gRPC + shared memory", "grpc", GRPC, 16, ["--shared-memory", "system"]),
]


def stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}/v2/models/squeezenet/stats") as r:
        s = json.load(r)["model_stats"][0]["inference_stats"]
    return {k: (s[k]["count"], s[k]["ns"]) for k in ("success", "compute_input", "queue", "compute_infer", "compute_output")}


TICK = os.sysconf("SC_CLK_TCK")


def server_seconds(pid):
    """CPU seconds so far of the server's workers (threads named corral-nc*) and of its other
    threads (a thread that already exited is not counted)."""
    workers = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        if comm.startswith("corral-nc"):
            workers += seconds
        else:
            other += seconds
    return workers, other


def machine_seconds():
    """CPU seconds so far of the whole machine: (busy, all)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK, sum(ticks) / TICK


def client_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def perf(protocol, port, concurrency, extra):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", "squeezenet", "-i", protocol, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--concurrency-range", str(concurrency), "--measurement-interval", str(int(SECONDS * 1000)),
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
        wait_ready(HTTP, server)
        top = ceiling("squeezenet")
        alone_ms = len(CPUS) * 1000 / top
        print(f"{len(CPUS)} CPUs; squeezenet, concurrency 16 unless named, {SECONDS:.0f} s windows; ceiling {top:.1f}/s, "
              f"{alone_ms:.2f} ms of CPU per inference alone")
        print("per request: decode / queue / compute / encode in microseconds, decode's share of the server's time;")
        print("CPU: share of the machine's time to corral's workers / corral's other threads / perf_analyzer / the rest,")
        print("and CPU time per inference (ms) of the workers, corral's other threads and perf_analyzer")
        print(f"{'case':<22}{'infer/s':>9}{'of ceil':>8}{'p50 ms':>8}{'p99 ms':>8}{'decode':>8}{'queue':>8}{'compute':>9}"
              f"{'encode':>8}{'decode %':>9}{'workers':>8}{'server':>7}{'client':>7}{'rest':>6}{'w ms/inf':>9}"
              f"{'s ms/inf':>9}{'c ms/inf':>9}")
        for name, protocol, port, concurrency, extra in CASES:
            before, cpu_before = stats(), (server_seconds(server.pid), client_seconds(), machine_seconds())
            figures, why = perf(protocol, port, concurrency, extra)
            after, cpu_after = stats(), (server_seconds(server.pid), client_seconds(), machine_seconds())
            if figures is None:
                print(f"{name:<22}  failed: {why.strip()[-200:]}", flush=True)
                continue
            d = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}
            n = max(d["success"][0], 1)
            us = lambda k: d[k][1] / n / 1000  # noqa: E731
            share = d["compute_input"][1] / max(d["success"][1], 1) * 100
            workers = cpu_after[0][0] - cpu_before[0][0]
            other = cpu_after[0][1] - cpu_before[0][1]
            client = cpu_after[1] - cpu_before[1]
            everything = cpu_after[2][1] - cpu_before[2][1]
            rest = everything - workers - other - client
            pct = lambda t: f"{t / everything * 100:.0f}%"  # noqa: E731
            rate, p50, p99 = figures
            print(f"{name:<22}{rate:>9.1f}{rate / top:>8.2f}{p50:>8.2f}{p99:>8.2f}{us('compute_input'):>8.0f}"
                  f"{us('queue'):>8.0f}{us('compute_infer'):>9.0f}{us('compute_output'):>8.0f}{share:>8.1f}%"
                  f"{pct(workers):>8}{pct(other):>7}{pct(client):>7}{pct(rest):>6}{workers * 1000 / n:>9.2f}"
                  f"{other * 1000 / n:>9.2f}{client * 1000 / n:>9.2f}", flush=True)
    finally:
        server.terminate()
        server.wait()


main()
