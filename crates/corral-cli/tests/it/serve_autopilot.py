"""The autopilot through `corral serve --autopilot` (SPEC §11): tritonclient threads drive
model `one`, then model `two`; the instance count Triton's config endpoint reports follows the
load, no call fails, and the moves counter on the metrics port counts the moves, with every
model's series present.

usage: serve_autopilot.py HTTP_PORT GRPC_PORT METRICS_PORT
"""

import re
import sys
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

http_port, grpc_port, metrics_port = sys.argv[1:4]
HTTP = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
DEADLINE_S = 120


def count(model):
    return HTTP.get_model_config(model)["instance_group"][0]["count"]


def drive(model, holds):
    """8 threads (half HTTP, half gRPC) call `model` until `holds()`; returns the errors."""
    stop = threading.Event()
    errors = []
    calls = [0]

    def caller(i):
        client = (thttp.InferenceServerClient(f"127.0.0.1:{http_port}") if i % 2
                  else tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}"))
        make = thttp.InferInput if i % 2 else tgrpc.InferInput
        x = make("x", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, dtype=np.float32))
        while not stop.is_set():
            try:
                result = client.infer(model, [x])
                assert result.as_numpy("y").shape == (1,)
                calls[0] += 1
            except Exception as e:  # every failure is a finding
                errors.append(f"{model}: {e!r}")

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + DEADLINE_S
    reached = holds()
    while not reached and time.monotonic() < deadline:
        time.sleep(0.1)
        reached = holds()
    stop.set()
    for t in threads:
        t.join()
    assert reached, f"driving {model} for {DEADLINE_S} s: counts one={count('one')} two={count('two')}"
    assert calls[0] > 0
    return errors


def moves():
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found = {}
    for m in re.finditer(r'^corral_autopilot_moves_total\{([^}]*)\} (\d+)', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        found[(labels["model"], labels["direction"])] = int(m.group(2))
    return found


before = moves()
assert before == {(m, d): 0 for m in ("one", "two") for d in ("grow", "shrink", "move")}, before
assert (count("one"), count("two")) == (1, 1)

errors = drive("one", lambda: count("one") >= 4)
errors += drive("two", lambda: count("two") >= 4 and count("one") <= 2)
assert errors == [], errors[:5]

after = moves()
assert after[("one", "grow")] >= 3 and after[("one", "shrink")] >= 2, after
assert after[("two", "grow")] >= 3, after
print(f"moves {after}")
print("autopilot checks passed")
