"""The seed's "Manual Core Selection" example, on this machine's real cores, with
``torch_neuronx.`` -> ``corral.``: m0 pinned to the last core, m1 replicated on the first two
(one core on a 1-core machine), then calls that show where each one ran.

    .venv/bin/python examples/python/manual_placement.py [MODEL.onnx]
"""

import pathlib
import sys
import sysconfig
import time

import numpy as np

import corral

site = pathlib.Path(sysconfig.get_paths()["purelib"])
model = sys.argv[1] if len(sys.argv) > 1 else site / "onnx/backend/test/data/light/light_squeezenet.onnx"

corral.init()  # every core of this machine (or CORRAL_NUM_CORES / NEURON_RT_VISIBLE_CORES)
n = len(corral.cores())
last = n - 1

# NOTE: Order of loads does NOT matter
with corral.neuron_cores_context(start_nc=last):
    m0 = corral.load(model)  # Loads to the last core
with corral.neuron_cores_context(start_nc=0, nc_count=min(2, n)):
    m1 = corral.load(model)  # Loads replicas to nc0 and nc1

print(f"device {corral.device()}: {n} cores, CPUs {[c['cpus'] for c in corral.cores()]}")
print(f"m0 {m0.name}: instances {m0.instances}")
print(f"m1 {m1.name}: instances {m1.instances}")

example = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)


def ran_on(m):
    before = [i["executions"] for i in m.stats()["instances"]]
    started = time.perf_counter()
    m(example)
    ms = (time.perf_counter() - started) * 1e3
    after = [i["executions"] for i in m.stats()["instances"]]
    instance = next(i for i, (a, b) in enumerate(zip(before, after)) if b > a)
    return m.instances[instance], ms


for label, m in [("m1", m1), ("m1", m1), ("m0", m0), ("m0", m0), ("m0", m0)]:
    cores, ms = ran_on(m)
    print(f"  {label}(example)  # executed on nc{cores[0]} in {ms:.1f} ms")
