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

The floor (bench/floor.py): the CPU a plain loopback TCP receive of the same 602 KB request
and send of the answer costs a reader on this machine, measured before and after the table;
each row's server-thread CPU per inference is also given as a multiple of it ("x floor").

usage: bench/extensions.py [SECONDS_PER_POINT] [ROUNDS]   (run through bench/extensions.sh)
  ROUNDS (default 1): each case measured this many times, alternating with the other cases
  (and binaries), medians shown. CORRAL_BEFORE=/path/to/an/older/corral measures that binary
  too, on its own server, alternating with this tree's: a before/after table in one run.
  EXT_CASES=name,name limits the cases.
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
from floor import floor_ms  # noqa: E402
import statistics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
BINARIES = [("after", f"{ROOT}/target/release/corral")]
if os.environ.get("CORRAL_BEFORE"):
    BINARIES.insert(0, ("before", os.environ["CORRAL_BEFORE"]))
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


def stats(http=HTTP):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/squeezenet/stats") as r:
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


def floor():
    """The loopback floor in ms: the median of three runs."""
    return statistics.median(floor_ms(2000, 1) for _ in range(3))


def measure(server, offset, protocol, port, concurrency, extra):
    """One case on one server: the row's figures, or None and why."""
    before, cpu_before = stats(HTTP + offset), (server_seconds(server.pid), client_seconds(), machine_seconds())
    figures, why = perf(protocol, port + offset, concurrency, extra)
    after, cpu_after = stats(HTTP + offset), (server_seconds(server.pid), client_seconds(), machine_seconds())
    if figures is None:
        return None, why
    d = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}
    n = max(d["success"][0], 1)
    workers = cpu_after[0][0] - cpu_before[0][0]
    other = cpu_after[0][1] - cpu_before[0][1]
    client = cpu_after[1] - cpu_before[1]
    everything = cpu_after[2][1] - cpu_before[2][1]
    rate, p50, p99 = figures
    return {
        "rate": rate, "p50": p50, "p99": p99,
        "decode": d["compute_input"][1] / n / 1000, "queue": d["queue"][1] / n / 1000,
        "compute": d["compute_infer"][1] / n / 1000, "encode": d["compute_output"][1] / n / 1000,
        "share": d["compute_input"][1] / max(d["success"][1], 1) * 100,
        "workers%": workers / everything * 100, "server%": other / everything * 100,
        "client%": client / everything * 100, "rest%": (everything - workers - other - client) / everything * 100,
        "w": workers * 1000 / n, "s": other * 1000 / n, "c": client * 1000 / n,
    }, ""


def main():
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/squeezenet/1")
    os.symlink(MODEL, f"{repo}/squeezenet/1/model.onnx")
    with open(f"{repo}/squeezenet/config.pbtxt", "w") as f:
        f.write('name: "squeezenet"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
                f"instance_group [ {{ count: {len(CPUS)}, kind: KIND_CPU }} ]\n")
    servers = []
    for i, (label, binary) in enumerate(BINARIES):
        offset = 20 * i
        servers.append((label, offset, subprocess.Popen(
            [binary, "serve", "--model-repository", repo, "--device", "cpu", "--http-port", str(HTTP + offset),
             "--grpc-port", str(GRPC + offset), "--metrics-port", str(HTTP + offset + 2)],
            env={**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp()}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)))
    try:
        for label, offset, server in servers:
            wait_ready(HTTP + offset, server)
        floor_before = floor()
        top = ceiling("squeezenet")
        alone_ms = len(CPUS) * 1000 / top
        print(f"{len(CPUS)} CPUs; squeezenet, concurrency 16 unless named, {SECONDS:.0f} s windows, {ROUNDS} round(s) "
              f"(medians); ceiling {top:.1f}/s, {alone_ms:.2f} ms of CPU per inference alone")
        print("per request: decode / queue / compute / encode in microseconds, decode's share of the server's time;")
        print("CPU: share of the machine's time to corral's workers / corral's other threads / perf_analyzer / the rest,")
        print("and CPU time per inference (ms) of the workers, corral's other threads and perf_analyzer;")
        print("x floor: corral's other threads' CPU per inference over the loopback floor")
        cases = CASES
        if os.environ.get("EXT_CASES"):
            wanted = os.environ["EXT_CASES"].split(",")
            cases = [c for c in CASES if c[0] in wanted]
        results = {}
        for _ in range(ROUNDS):
            for name, protocol, port, concurrency, extra in cases:
                for label, offset, server in servers:
                    row, why = measure(server, offset, protocol, port, concurrency, extra)
                    if row is None:
                        print(f"{name} [{label}]  failed: {why.strip()[-200:]}", flush=True)
                        continue
                    results.setdefault((name, label), []).append(row)
        floor_after = floor()
        floor_ms_ = statistics.median([floor_before, floor_after])
        print(f"loopback floor: {floor_before * 1000:.0f} us before the table, {floor_after * 1000:.0f} us after "
              f"(bench/floor.py: the reader's CPU per 602,112-byte request and 4,000-byte reply)")
        print(f"{'case':<31}{'infer/s':>9}{'of ceil':>8}{'p50 ms':>8}{'p99 ms':>8}{'decode':>8}{'queue':>8}"
              f"{'compute':>9}{'encode':>8}{'decode %':>9}{'workers':>8}{'server':>7}{'client':>7}{'rest':>6}"
              f"{'w ms/inf':>9}{'s ms/inf':>9}{'c ms/inf':>9}{'x floor':>8}")
        for name, *_ in cases:
            for label, _, _ in servers:
                rows = results.get((name, label))
                if not rows:
                    continue
                m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                runs = " ".join(f"{r['rate'] / top:.2f}" for r in rows)
                title = f"{name} [{label}]" if len(servers) > 1 else name
                print(f"{title:<31}{m['rate']:>9.1f}{m['rate'] / top:>8.2f}{m['p50']:>8.2f}{m['p99']:>8.2f}"
                      f"{m['decode']:>8.0f}{m['queue']:>8.0f}{m['compute']:>9.0f}{m['encode']:>8.0f}{m['share']:>8.1f}%"
                      f"{m['workers%']:>7.0f}%{m['server%']:>6.0f}%{m['client%']:>6.0f}%{m['rest%']:>5.0f}%"
                      f"{m['w']:>9.2f}{m['s']:>9.2f}{m['c']:>9.2f}{m['s'] / floor_ms_:>8.2f}"
                      + (f"   (of ceiling, each run: {runs})" if len(rows) > 1 else ""), flush=True)
    finally:
        for _, _, server in servers:
            server.terminate()
            server.wait()


main()
