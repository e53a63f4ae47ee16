"""The engine choice through `corral serve` (run through bench/engines_serve.sh), one run:

1. c16: inception_v1 on both cores (one single-core instance per core), perf_analyzer over
   HTTP (binary tensors) at concurrency 16, CORRAL_ONNX_ENGINE=auto (the default) beside
   =onnxruntime, taking turns for 3 rounds; and the raw-engine ceiling of the engine auto
   chose, measured as bench/runtime.sh measures ONNX Runtime's: that engine's Python API, one
   single-thread process pinned to each CPU, no server (OpenVINO: one stream, one inference
   thread, CPU pinning off, f32, as corral compiles it). Medians; ratios.
2. Load time: a repository of 16 ONNX models (the 9 light_* models, magika, silero-vad and
   rapidocr's three, some twice), `corral serve` started until ready, for =onnxruntime,
   =openvino and =auto (openvino alone loads fewer: it refuses what it cannot run).

usage: bench/engines_serve.py [SECONDS_PER_WINDOW]
"""

import csv
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1][0].isdigit() else 4.0
CPUS = sorted(os.sched_getaffinity(0))
LIGHT = f"{SITE}/onnx/backend/test/data/light"
INCEPTION = (f"{LIGHT}/light_inception_v1.onnx", "data_0", [1, 3, 224, 224])

CEILING_WORKER = """
import sys, time, numpy as np
engine, path, name, shape, seconds = sys.argv[1], sys.argv[2], sys.argv[3], [int(d) for d in sys.argv[4].split(',')], float(sys.argv[5])
x = np.zeros(shape, dtype=np.float32)
if engine == 'onnxruntime':
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=['CPUExecutionProvider'])
    run = lambda: s.run(None, {name: x})
else:
    import openvino as ov
    compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_NUM_THREADS': 1, 'NUM_STREAMS': 1,
        'ENABLE_CPU_PINNING': False, 'INFERENCE_PRECISION_HINT': 'f32'})
    request = compiled.create_infer_request()
    run = lambda: request.infer({name: x})
for _ in range(5): run()
n, end = 0, time.perf_counter() + seconds
while time.perf_counter() < end:
    run(); n += 1
print(n / seconds)
"""


def ceiling(engine):
    path, name, shape = INCEPTION
    procs = [subprocess.Popen(["taskset", "-c", str(cpu), f"{ROOT}/.venv/bin/python", "-c", CEILING_WORKER, engine,
                               path, name, ",".join(map(str, shape)), str(SECONDS)], stdout=subprocess.PIPE, text=True)
             for cpu in CPUS]
    return sum(float(p.communicate()[0]) for p in procs)


def repository(models):
    repo = tempfile.mkdtemp()
    for name, path, extra in models:
        os.makedirs(f"{repo}/{name}/1")
        os.symlink(path, f"{repo}/{name}/1/model.onnx")
        with open(f"{repo}/{name}/config.pbtxt", "w") as f:
            f.write(f'platform: "onnxruntime_onnx"\n{extra}')
    return repo


def serve(repo, engine, port):
    # Not strict: OpenVINO alone refuses silero-vad, and the time is that of every load done.
    command = [f"{ROOT}/target/release/corral", "serve", "--model-repository", repo, "--device", "cpu",
               "--http-port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2),
               "--strict-readiness=false"]
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": engine}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc, seconds=300)
    return proc, time.perf_counter() - started


def perf(port):
    _, name, shape = INCEPTION
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", "inception_v1", "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--shape", f"{name}:{','.join(map(str, shape))}", "--concurrency-range", "16",
                   "--measurement-interval", str(int(SECONDS * 1000)), "--stability-percentage", "25",
                   "--max-trials", "6", "-f", out.name]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            return None
        return float(next(csv.DictReader(open(out.name)))["Inferences/Second"])


def chosen(port):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/inception_v1/config").read().decode()
    import json
    parameters = json.loads(body)["parameters"]
    return parameters["corral.engine"]["string_value"], parameters.get("corral.engine.reason", {}).get("string_value")


def c16():
    repo = repository([("inception_v1", INCEPTION[0], f"instance_group [ {{ count: {len(CPUS)} }} ]\n")])
    servers = {engine: serve(repo, engine, port)[0] for engine, port in (("auto", 18500), ("onnxruntime", 18510))}
    ports = {"auto": 18500, "onnxruntime": 18510}
    try:
        engine, reason = chosen(ports["auto"])
        print(f"auto chose {engine} for inception_v1: {reason}")
        rates = {e: [] for e in servers}
        for _ in range(3):
            for e in servers:
                rate = perf(ports[e])
                if rate is not None:
                    rates[e].append(rate)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait()
    auto, ort = statistics.median(rates["auto"]), statistics.median(rates["onnxruntime"])
    top = ceiling(engine)
    print(f"c16 inception_v1, {len(CPUS)} instances: auto {auto:.1f}/s, onnxruntime only {ort:.1f}/s: "
          f"auto / onnxruntime {auto / ort:.2f}")
    print(f"raw {engine} ceiling ({len(CPUS)} pinned one-thread processes): {top:.1f}/s: auto / ceiling {auto / top:.2f}")


def load_times():
    models = [(os.path.basename(p)[:-5], p, "") for p in sorted(glob.glob(f"{LIGHT}/light_*.onnx"))]
    models += [
        ("magika", f"{SITE}/magika/models/standard_v3_3/model.onnx", ""),
        ("silero", f"{SITE}/silero_vad/data/silero_vad.onnx", ""),
        ("ocr_det", f"{SITE}/rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", ""),
        ("ocr_rec", f"{SITE}/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", ""),
        ("ocr_cls", f"{SITE}/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", ""),
    ]
    models += [(f"{name}_b", path, extra) for name, path, extra in models[:16 - len(models)]]
    repo = repository(models)
    print(f"load time of {len(models)} models until ready:")
    for engine in ("onnxruntime", "openvino", "auto"):
        proc, took = serve(repo, engine, 18600)
        ready = urllib.request.urlopen("http://127.0.0.1:18600/v2/repository/index", data=b"{}").read().decode()
        count = ready.count('"READY"')
        proc.terminate()
        proc.wait()
        print(f"  {engine:<12}{took:>7.1f} s   {count} of {len(models)} ready")


def main():
    print(f"{len(CPUS)} CPUs, {SECONDS:.0f} s windows")
    if "--load-only" not in sys.argv:
        c16()
    load_times()


if __name__ == "__main__":
    main()
