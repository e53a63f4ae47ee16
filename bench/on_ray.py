"""Ray Serve with corral against Ray Serve with plain onnxruntime, side by side in one run:
the same model (squeezenet), 2 replicas each, the same closed-loop client (C asyncio callers
through the deployment handle, each sending its next call when the last one is answered) at
concurrency 1, 4 and 16, the two systems alternating point by point. Prints throughput and
p50/p99 latency per point and the ratios; raw numbers go to target/bench/on_ray.json.

    ./bench/on_ray.sh [SECONDS_PER_POINT]

- corral: ``corral.ray.deployment(squeezenet, num_replicas=2)``; each replica asks Ray for one
  ``neuron_cores``, owns that core exclusively and is pinned to its CPU.
- onnxruntime: a Ray Serve deployment holding an ``InferenceSession`` with one intra-op
  thread, 2 replicas, no pinning (what one writes without corral).
"""

import asyncio
import json
import os
import pathlib
import statistics
import sys
import sysconfig
import tempfile
import time
import warnings

import numpy as np

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
CONCURRENCY = [1, 4, 16]
SQUEEZENET = pathlib.Path(sysconfig.get_paths()["purelib"]) / "onnx/backend/test/data/light/light_squeezenet.onnx"

os.environ["CORRAL_DEVICE"] = "cpu"
os.environ["CORRAL_LOCK_DIR"] = tempfile.mkdtemp(prefix="corral-bench-ray-")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve

import corral.ray  # noqa: E402


class PlainOnnxRuntime:
    """The baseline replica: one onnxruntime session, one intra-op thread, not pinned."""

    def __init__(self, path: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.input: x})[0]


async def closed_loop(handle, x, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller():
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await handle.remote(x)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


def summary(latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {
        "calls": len(ordered),
        "per_s": len(ordered) / seconds,
        "p50_ms": 1e3 * statistics.median(ordered),
        "p99_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


async def measure(handles: dict, x) -> dict:
    results = {name: {} for name in handles}
    for name, handle in handles.items():  # warm up every replica
        await asyncio.gather(*(handle.remote(x) for _ in range(16)))
    for concurrency in CONCURRENCY:
        for name, handle in handles.items():
            latencies = await closed_loop(handle, x, concurrency, SECONDS)
            results[name][concurrency] = summary(latencies, SECONDS)
    return results


def main():
    resources = corral.ray.node_resources()
    ray.init(num_cpus=os.cpu_count(), resources=resources, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 0})
        handles = {
            "corral": serve.run(corral.ray.deployment(SQUEEZENET, num_replicas=2), name="corral", route_prefix="/c"),
            "onnxruntime": serve.run(
                serve.deployment(PlainOnnxRuntime, num_replicas=2, ray_actor_options={"num_cpus": 0}).bind(
                    str(SQUEEZENET)
                ),
                name="onnxruntime",
                route_prefix="/o",
            ),
        }
        x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
        results = asyncio.run(measure(handles, x))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"squeezenet on Ray Serve, 2 replicas, node declares {resources}, {SECONDS:g} s per point")
    print(f"{'C':>3} | {'corral /s':>9} {'p50 ms':>7} {'p99 ms':>7} | {'ort /s':>9} {'p50 ms':>7} {'p99 ms':>7} |"
          f" {'thru x':>6} {'p99 x':>6}")
    for c in CONCURRENCY:
        a, b = results["corral"][c], results["onnxruntime"][c]
        print(f"{c:>3} | {a['per_s']:>9.1f} {a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} | {b['per_s']:>9.1f}"
              f" {b['p50_ms']:>7.2f} {b['p99_ms']:>7.2f} | {a['per_s'] / b['per_s']:>6.3f}"
              f" {a['p99_ms'] / b['p99_ms']:>6.3f}")
    print("thru x: corral's throughput / onnxruntime's; p99 x: corral's p99 / onnxruntime's (below 1 is better)")
    out = pathlib.Path("target/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "on_ray.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
