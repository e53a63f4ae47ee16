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

What a call costs whatever its size: the "small tensors" cases call a generated model with the
same compute as squeezenet (six 512x512 MatMul+Relu layers on a 256x16 input, ~9 ms alone) but
16 KB in and 2 KB out, under the same load; their server CPU per call, beside the floor of an
exchange of those sizes, splits the 602 KB rows into a part per call and a part per byte.

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
BINARIES = [("after", os.environ.get("CORRAL_AFTER", f"{ROOT}/target/release/corral"))]
if os.environ.get("CORRAL_BEFORE"):
    BINARIES.insert(0, ("before", os.environ["CORRAL_BEFORE"]))
CPUS = sorted(os.sched_getaffinity(0))
MODEL = f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx"
HTTP, GRPC = 18300, 18301
SMALL_IN, SMALL_OUT = 256 * 16 * 4, 512 * 4
# (name, model, protocol, port, concurrency, perf_analyzer's extra arguments); the c4 cases show
# what going from 4 to 16 calls in flight costs, per inference, on each side.
CASES = [
    ("HTTP c4", "squeezenet", "http", HTTP, 4, []),
    ("HTTP", "squeezenet", "http", HTTP, 16, []),
    ("HTTP + shared memory", "squeezenet", "http", HTTP, 16, ["--shared-memory", "system"]),
    ("gRPC c4", "squeezenet", "grpc", GRPC, 4, []),
    ("gRPC", "squeezenet", "grpc", GRPC, 16, []),
    ("gRPC streaming", "squeezenet", "grpc", GRPC, 16, ["--streaming"]),
    ("gRPC + shared memory", "squeezenet", "grpc", GRPC, 16, ["--shared-memory", "system"]),
    ("HTTP small tensors", "small", "http", HTTP, 16, []),
    ("gRPC small tensors", "small", "grpc", GRPC, 16, []),
]


def small_model(path):
    """Writes the small-tensor model: squeezenet's compute, 16 KB in, 2 KB out (random weights)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((16, 512)) / 4).astype(np.float32), "w0")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"])]
    for i in range(1, 7):
        weights.append(numpy_helper.from_array((rng.standard_normal((512, 512)) / 22).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [f"h{i - 1}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"h{i}"])]
    weights.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis"))
    nodes.append(helper.make_node("ReduceMean", ["h6", "axis"], ["y"], keepdims=0))
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)


def stats(http=HTTP, model="squeezenet"):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{model}/stats") as r:
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


def perf(model, protocol, port, concurrency, extra):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", model, "-i", protocol, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--concurrency-range", str(concurrency), "--measurement-interval", str(int(SECONDS * 1000)),
                   "--stability-percentage", "50", "--max-trials", "10", "--percentile", "99", "-f", out.name, *extra]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            return None, (result.stdout + result.stderr)[-300:]
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000), ""


def floor(request=602112, reply=4000):
    """The loopback floor in ms: the median of three runs."""
    return statistics.median(floor_ms(2000, 1, request, reply) for _ in range(3))


def measure(server, offset, model, protocol, port, concurrency, extra):
    """One case on one server: the row's figures, or None and why."""
    before = stats(HTTP + offset, model)
    cpu_before = (server_seconds(server.pid), client_seconds(), machine_seconds())
    figures, why = perf(model, protocol, port + offset, concurrency, extra)
    after, cpu_after = stats(HTTP + offset, model), (server_seconds(server.pid), client_seconds(), machine_seconds())
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


def split(results, floors, labels):
    """The 602 KB rows' server CPU split into a part per call (the small tensors' row) and a part
    per byte (the rest), the latter beside the floor's own part per byte."""
    per_byte_floor = floors["squeezenet"] - floors["small"]
    for protocol in ("HTTP", "gRPC"):
        for label in labels:
            big, small = results.get((protocol, label)), results.get((f"{protocol} small tensors", label))
            if not big or not small:
                continue
            big_ms = statistics.median(r["s"] for r in big)
            small_ms = statistics.median(r["s"] for r in small)
            title = f"{protocol} [{label}]" if len(labels) > 1 else protocol
            print(f"{title}: per call {small_ms * 1000:.0f} us ({small_ms / floors['small']:.1f}x the small floor "
                  f"{floors['small'] * 1000:.0f} us); per 586 KB more {(big_ms - small_ms) * 1000:.0f} us "
                  f"({(big_ms - small_ms) / per_byte_floor:.1f}x the floor's {per_byte_floor * 1000:.0f} us)")


def main():
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/squeezenet/1")
    os.symlink(MODEL, f"{repo}/squeezenet/1/model.onnx")
    os.makedirs(f"{repo}/small/1")
    small_model(f"{repo}/small/1/model.onnx")
    for name in ("squeezenet", "small"):
        with open(f"{repo}/{name}/config.pbtxt", "w") as f:
            f.write(f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
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
        floor_before, small_before = floor(), floor(SMALL_IN, SMALL_OUT)
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
            for name, model, protocol, port, concurrency, extra in cases:
                for label, offset, server in servers:
                    row, why = measure(server, offset, model, protocol, port, concurrency, extra)
                    if row is None:
                        print(f"{name} [{label}]  failed: {why.strip()[-200:]}", flush=True)
                        continue
                    results.setdefault((name, label), []).append(row)
        floor_after, small_after = floor(), floor(SMALL_IN, SMALL_OUT)
        floors = {"squeezenet": statistics.median([floor_before, floor_after]),
                  "small": statistics.median([small_before, small_after])}
        print(f"loopback floor: {floor_before * 1000:.0f} us before the table, {floor_after * 1000:.0f} us after "
              f"(bench/floor.py: the reader's CPU per 602,112-byte request and 4,000-byte reply); "
              f"{small_before * 1000:.0f} and {small_after * 1000:.0f} us for the small tensors' "
              f"{SMALL_IN:,} and {SMALL_OUT:,} bytes")
        print(f"{'case':<31}{'infer/s':>9}{'of ceil':>8}{'p50 ms':>8}{'p99 ms':>8}{'decode':>8}{'queue':>8}"
              f"{'compute':>9}{'encode':>8}{'decode %':>9}{'workers':>8}{'server':>7}{'client':>7}{'rest':>6}"
              f"{'w ms/inf':>9}{'s ms/inf':>9}{'c ms/inf':>9}{'x floor':>8}")
        for name, model, *_ in cases:
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
                      f"{m['w']:>9.2f}{m['s']:>9.2f}{m['c']:>9.2f}{m['s'] / floors[model]:>8.2f}"
                      + (f"   (of ceiling, each run: {runs})" if len(rows) > 1 else ""), flush=True)
        split(results, floors, [label for label, _, _ in servers])
    finally:
        for _, _, server in servers:
            server.terminate()
            server.wait()


main()
