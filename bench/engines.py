"""OpenVINO against ONNX Runtime on one pinned core (run through bench/engines.sh).

For each model, `corral bench` runs it as one single-core instance (`--num-cores 1`, one
calling thread) with CORRAL_ONNX_ENGINE=onnxruntime, =openvino and =auto (the timed choice,
its time to load included in nothing: bench measures after loading), alternating for 3
rounds, each in its own lock folder; the table gives each one's median throughput,
OpenVINO's ratio to ONNX Runtime and auto's to the faster of the two, then the geometric
means of auto's ratios to ONNX Runtime and to the faster engine. The light_* models
have the real architectures (and their compute) with uniform weights. rapidocr's classifier
and detector take images of any size: `corral bench` runs them on its sample input, whose
open dimensions are 1 (1x3x1x1 images), where a call's fixed cost is all there is.
"""

import glob
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
ROUNDS = 3
LIGHT = f"{SITE}/onnx/backend/test/data/light"
MODELS = {
    "squeezenet": f"{LIGHT}/light_squeezenet.onnx",
    "inception_v1": f"{LIGHT}/light_inception_v1.onnx",
    "resnet50": f"{LIGHT}/light_resnet50.onnx",
    "densenet121": f"{LIGHT}/light_densenet121.onnx",
    "magika": f"{SITE}/magika/models/standard_v3_3/model.onnx",
    "ocr_cls": f"{SITE}/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "ocr_det": f"{SITE}/rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
}


def bench(path, engine):
    command = [f"{ROOT}/target/release/corral", "bench", path, "--device", "cpu", "--num-cores", "1",
               "--threads", "1", "--duration", str(SECONDS), "--json"]
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": engine}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out[:out.rindex("}") + 1])["models"][0]["throughput_per_s"]


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


print(f"{'model':<14}{'onnxruntime /s':>16}{'openvino /s':>13}{'ov/ort':>8}{'auto /s':>10}{'auto/best':>11}")
to_ort, to_best = [], []
for name, path in MODELS.items():
    runs = {"onnxruntime": [], "openvino": [], "auto": []}
    for _ in range(ROUNDS):
        for engine in runs:
            runs[engine].append(bench(path, engine))
    ort, ov, auto = (statistics.median(runs[e]) for e in ("onnxruntime", "openvino", "auto"))
    to_ort.append(auto / ort)
    to_best.append(auto / max(ort, ov))
    print(f"{name:<14}{ort:>16.1f}{ov:>13.1f}{ov / ort:>8.2f}{auto:>10.1f}{auto / max(ort, ov):>11.2f}", flush=True)
print(f"geometric means: auto / onnxruntime {geomean(to_ort):.2f}, auto / the faster engine {geomean(to_best):.2f}")
