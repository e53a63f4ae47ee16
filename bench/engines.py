"""OpenVINO against ONNX Runtime on one pinned core (run through bench/engines.sh).

For each model, `corral bench` runs it as one single-core instance (`--num-cores 1`, one
calling thread) with CORRAL_ONNX_ENGINE=onnxruntime and then =openvino, alternating for 5
rounds, each in its own lock folder; the table gives each engine's median throughput and
OpenVINO's ratio to ONNX Runtime, then the geometric mean of the ratios. The light_* models
have the real architectures (and their compute) with uniform weights.
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
ROUNDS = 5
LIGHT = f"{SITE}/onnx/backend/test/data/light"
MODELS = {
    "squeezenet": f"{LIGHT}/light_squeezenet.onnx",
    "inception_v1": f"{LIGHT}/light_inception_v1.onnx",
    "resnet50": f"{LIGHT}/light_resnet50.onnx",
    "densenet121": f"{LIGHT}/light_densenet121.onnx",
    "magika": f"{SITE}/magika/models/standard_v3_3/model.onnx",
    "ocr_cls": f"{SITE}/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
}


def bench(path, engine):
    command = [f"{ROOT}/target/release/corral", "bench", path, "--device", "cpu", "--num-cores", "1",
               "--threads", "1", "--duration", str(SECONDS), "--json"]
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": engine}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out[:out.rindex("}") + 1])["models"][0]["throughput_per_s"]


print(f"{'model':<14}{'onnxruntime /s':>16}{'openvino /s':>13}{'ratio':>7}")
ratios = []
for name, path in MODELS.items():
    runs = {"onnxruntime": [], "openvino": []}
    for _ in range(ROUNDS):
        for engine in runs:
            runs[engine].append(bench(path, engine))
    ort, ov = (statistics.median(runs[e]) for e in ("onnxruntime", "openvino"))
    ratios.append(ov / ort)
    print(f"{name:<14}{ort:>16.1f}{ov:>13.1f}{ov / ort:>7.2f}", flush=True)
print(f"geometric mean of OpenVINO's ratios: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")
