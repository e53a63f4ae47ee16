"""Traffic against a running `corral serve`: CALLS calls from 32 threads over three models
(add and tick stay loaded, flip is unloaded and reloaded over and over meanwhile). Every call
must succeed, or, for flip only, be refused with 404 while it is unloaded; no call may vanish
or fail otherwise. Then the server's metrics must agree with what the clients counted.

usage: serve_traffic.py HTTP_PORT METRICS_PORT CALLS
"""

import collections
import random
import sys
import threading
import urllib.request

import numpy as np
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

http_port, metrics_port, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
URL = f"127.0.0.1:{http_port}"
THREADS = 32
counts = collections.Counter()
problems = []
lock = threading.Lock()
remaining = [calls]


def take():
    with lock:
        if remaining[0] == 0:
            return False
        remaining[0] -= 1
        return True


def inputs_for(model):
    if model == "tick":
        x = thttp.InferInput("x", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, dtype=np.float32))
        return [x]
    a = np.random.default_rng().random((3, 4, 5), dtype=np.float32)
    x, y = thttp.InferInput("x", [3, 4, 5], "FP32"), thttp.InferInput("y", [3, 4, 5], "FP32")
    x.set_data_from_numpy(a)
    y.set_data_from_numpy(a)
    return [x, y]


def caller(seed):
    client = thttp.InferenceServerClient(URL)
    rng = random.Random(seed)
    while take():
        model = rng.choice(["add", "tick", "flip"])
        try:
            sent = inputs_for(model)
            result = client.infer(model, sent)
            if model == "tick":
                outcome = "ok"
            else:
                a = np.frombuffer(sent[0]._get_binary_data(), dtype=np.float32).reshape(3, 4, 5)
                outcome = "ok" if np.allclose(result.as_numpy("sum"), 2 * a) else "wrong answer"
        except InferenceServerException as e:
            outcome = "404" if e.status() == "404" and model == "flip" else f"error {e.status()}: {e.message()}"
        except Exception as e:  # a dropped connection is a lost call
            outcome = f"lost: {e!r}"
        with lock:
            counts[(model, outcome)] += 1
            if outcome not in ("ok", "404"):
                problems.append((model, outcome))


stop = threading.Event()
flips = [0]


def flipper():
    client = thttp.InferenceServerClient(URL)
    while not stop.is_set():
        client.unload_model("flip")
        client.load_model("flip")
        flips[0] += 1


threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
flip_thread = threading.Thread(target=flipper)
flip_thread.start()
for t in threads:
    t.start()
for t in threads:
    t.join()
stop.set()
flip_thread.join()

print(dict(counts), "reloads:", flips[0])
if problems:
    print("FAILED:", problems[:5])
    sys.exit(1)
if sum(counts.values()) != calls:
    print("FAILED: answered", sum(counts.values()), "of", calls)
    sys.exit(1)
if flips[0] < 3:
    print("FAILED: flip was reloaded only", flips[0], "times")
    sys.exit(1)

metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
served = {}
for line in metrics.splitlines():
    if line.startswith("nv_inference_request_success{"):
        model = line.split('model="')[1].split('"')[0]
        served[model] = int(line.split()[-1])
for model in ["add", "tick", "flip"]:
    ok = counts[(model, "ok")]
    if served.get(model) != ok:
        print(f"FAILED: metrics say {served.get(model)} successes for {model}, clients counted {ok}")
        sys.exit(1)
# The latency histogram: cumulative buckets, +Inf and _count equal to every answered call.
for model in ["add", "tick", "flip"]:
    buckets = [int(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith(f'corral_request_duration_seconds_bucket{{model="{model}",')]
    count = next(int(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith(f'corral_request_duration_seconds_count{{model="{model}",version="1"}}'))
    failures = next(int(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith(f'nv_inference_request_failure{{model="{model}",'))
    if buckets != sorted(buckets) or buckets[-1] != count or count != served[model] + failures:
        print(f"FAILED: {model}'s histogram {buckets} (count {count}) is not its {served[model]} + {failures} calls")
        sys.exit(1)
print("traffic checks passed")
