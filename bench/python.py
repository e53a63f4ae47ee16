"""The Python package's figures in one run, one table (medians and ratios measured side by
side): per-call overhead of corral from Python against onnxruntime's own Python API, and two
Python threads on a multicore model against the machine's ceiling and a 2-thread session.

    ./bench/python.sh [SECONDS_PER_POINT]

Raw numbers go to target/bench/python.json.
"""

import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import sysconfig
import tempfile
import threading
import time

import numpy as np
import onnxruntime

os.environ.setdefault("CORRAL_LOCK_DIR", tempfile.mkdtemp(prefix="corral-bench-"))
os.environ["CORRAL_DEVICE"] = "cpu"
import corral  # noqa: E402  (after the environment it reads)

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
SITE = pathlib.Path(sysconfig.get_paths()["purelib"])
MODELS = {
    "add (tiny)": SITE / "onnx/backend/test/data/node/test_add/model.onnx",
    "squeezenet": SITE / "onnx/backend/test/data/light/light_squeezenet.onnx",
    "magika": SITE / "magika/models/standard_v3_3/model.onnx",
}
RNG = np.random.default_rng(0)


def feeds_for(session):
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if "int32" in i.type:
            feeds[i.name] = RNG.integers(0, 256, size=shape, dtype=np.int32)
        else:
            feeds[i.name] = RNG.random(shape, dtype=np.float32)
    return feeds


def session(path, threads=1):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_call_us(call, seconds):
    for _ in range(3):
        call()
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e3)
    return statistics.median(samples), len(samples)


ROUNDS = 8


def overhead(results):
    """Per model: short runs of each side in turn (``ROUNDS`` pairs), so both see the same
    machine weather; the ratio is the median of the pairs' ratios. onnxruntime's calling
    thread is pinned to the CPU of corral's replica (core 0), as in bench/runtime.sh."""
    rows = []
    everywhere = os.sched_getaffinity(0)
    for name, path in MODELS.items():
        ort = session(path)
        feeds = feeds_for(ort)
        model = corral.load(path, ctx=corral.neuron_cores_context(start_nc=0))
        cpu = set(corral.cores()[0]["cpus"])
        ours, theirs = [], []
        for _ in range(ROUNDS):
            os.sched_setaffinity(0, cpu)
            theirs.append(median_call_us(lambda: ort.run(None, feeds), SECONDS / ROUNDS)[0])
            os.sched_setaffinity(0, everywhere)
            ours.append(median_call_us(lambda: model(**feeds), SECONDS / ROUNDS)[0])
        ratio = statistics.median(o / t for o, t in zip(ours, theirs))
        o, t = statistics.median(ours), statistics.median(theirs)
        rows.append((name, o, t, ratio))
        results["overhead"][name] = {"corral_us": o, "onnxruntime_us": t, "ratio": ratio, "added_us": o - t,
                                     "rounds": {"corral_us": ours, "onnxruntime_us": theirs}}
        model.unload()
    return rows


def pinned_worker(args):
    path, cpu, seconds = args
    os.sched_setaffinity(0, {cpu})
    ort = session(path)
    feeds = feeds_for(ort)
    for _ in range(5):
        ort.run(None, feeds)
    calls, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        ort.run(None, feeds)
        calls += 1
    return calls / seconds


def threads_per_second(call, threads, seconds):
    for _ in range(5):
        call()
    counts = [0] * threads
    stop = threading.Event()

    def loop(i):
        while not stop.is_set():
            call()
            counts[i] += 1

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(loop, i) for i in range(threads)]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
    return sum(counts) / seconds


def scaling(results):
    path = MODELS["squeezenet"]
    cpus = sorted(os.sched_getaffinity(0))[:2]
    with multiprocessing.get_context("spawn").Pool(len(cpus)) as pool:
        ceiling = sum(pool.map(pinned_worker, [(str(path), cpu, SECONDS) for cpu in cpus]))
    with corral.multicore_context():
        model = corral.load(path)
    feeds = feeds_for(session(path))
    ours = threads_per_second(lambda: model(**feeds), 2, SECONDS)
    wide = session(path, threads=2)
    theirs = threads_per_second(lambda: wide.run(None, feeds), 2, SECONDS)
    results["scaling"] = {"corral_per_s": ours, "ceiling_per_s": ceiling, "ort_2_threads_per_s": theirs,
                          "of_ceiling": ours / ceiling, "vs_2_thread_session": ours / theirs}
    model.unload()
    return ours, ceiling, theirs


def main():
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
    print(f"{os.cpu_count()} CPUs, {cpu}; {SECONDS} s per point; onnxruntime {onnxruntime.__version__}")
    results = {"seconds": SECONDS, "overhead": {}}
    print("\n| model | corral from Python, p50 | onnxruntime from Python, p50 | ratio (median of pairs) | added |")
    print("|---|---|---|---|---|")
    for name, o, t, ratio in overhead(results):
        print(f"| {name} | {o:.1f} µs | {t:.1f} µs | {ratio:.3f} | {o - t:+.1f} µs |")
    ours, ceiling, theirs = scaling(results)
    print("\n| squeezenet, 2 Python threads | calls/s | corral's ratio to it |")
    print("|---|---|---|")
    print(f"| corral, multicore model (one replica per core) | {ours:.1f} | - |")
    print(f"| ceiling: 2 pinned single-thread onnxruntime processes | {ceiling:.1f} | {ours / ceiling:.3f} |")
    print(f"| one onnxruntime session, 2 intra-op threads | {theirs:.1f} | {ours / theirs:.3f} |")
    out = pathlib.Path("target/bench/python.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
