"""Elastic instances against fixed single-core replicas (run through bench/elastic.sh).

For each model and thread count, `corral bench` runs the model placed as one single-core
replica per core, once with `[placement] elastic = true` and once without, alternating, each
in its own lock folder; the table gives p50 and throughput and elastic's ratio to fixed.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
MODELS = {
    "squeezenet": f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx",
    "magika": f"{SITE}/magika/models/standard_v3_3/model.onnx",
}


def repository(path, elastic):
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/m/1")
    os.symlink(path, f"{repo}/m/1/model.onnx")
    with open(f"{repo}/m/config.toml", "w") as f:
        f.write(f'platform = "onnx"\n[placement]\ncount = "all"\nelastic = {"true" if elastic else "false"}\n')
    return repo


def bench(repo, threads):
    command = [f"{ROOT}/target/release/corral", "bench", "--model-repository", repo, "--device", "cpu",
               "--threads", str(threads), "--duration", str(SECONDS), "--json"]
    out = subprocess.run(command, env={**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp()},
                         capture_output=True, text=True, check=True).stdout
    model = json.loads(out[:out.rindex("}") + 1])["models"][0]
    return model["p50_ms"], model["throughput_per_s"]


print(f"{'model':<11}{'threads':>8}{'fixed p50':>11}{'elastic p50':>13}{'ratio':>7}"
      f"{'fixed /s':>10}{'elastic /s':>12}{'ratio':>7}")
for name, path in MODELS.items():
    fixed, elastic = repository(path, False), repository(path, True)
    for threads in (1, 2, 4, 16):
        f50, frate = bench(fixed, threads)
        e50, erate = bench(elastic, threads)
        print(f"{name:<11}{threads:>8}{f50:>9.2f}ms{e50:>11.2f}ms{e50 / f50:>7.2f}"
              f"{frate:>10.1f}{erate:>12.1f}{erate / frate:>7.2f}", flush=True)
