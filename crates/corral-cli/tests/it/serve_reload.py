"""Reloads under traffic against a running `corral serve`: 4 threads call `add` without pause
while it is reloaded RELOADS times; every call must be answered 200 with the right sum (no
404, no dropped connection). Then the model file is corrupted and reloaded: the load must
fail with the reason, the old version must keep answering, and the repository index must
show it READY with the failure as its reason.

usage: serve_reload.py HTTP_PORT MODEL_FILE RELOADS
"""

import collections
import sys
import threading
import time

import numpy as np
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

http_port, model_file, reloads = sys.argv[1], sys.argv[2], int(sys.argv[3])
URL = f"127.0.0.1:{http_port}"
counts = collections.Counter()
problems = []
lock = threading.Lock()
stop = threading.Event()


def caller():
    client = thttp.InferenceServerClient(URL)
    rng = np.random.default_rng()
    while not stop.is_set():
        a = rng.random((3, 4, 5), dtype=np.float32)
        x, y = thttp.InferInput("x", [3, 4, 5], "FP32"), thttp.InferInput("y", [3, 4, 5], "FP32")
        x.set_data_from_numpy(a)
        y.set_data_from_numpy(a)
        try:
            result = client.infer("add", [x, y])
            outcome = "200" if np.allclose(result.as_numpy("sum"), 2 * a) else "wrong answer"
        except InferenceServerException as e:
            outcome = f"{e.status()}: {e.message()}"
        except Exception as e:  # a dropped connection is a lost call
            outcome = f"lost: {e!r}"
        with lock:
            counts[outcome] += 1
            if outcome != "200":
                problems.append(outcome)


def answered():
    with lock:
        return sum(counts.values())


def wait_answered(count, what, seconds=60):
    """Until `count` calls have been answered; fails after `seconds` (calls stopped coming back)."""
    deadline = time.monotonic() + seconds
    while answered() < count:
        if time.monotonic() > deadline:
            stop.set()
            sys.exit(f"only {answered()} of {count} calls answered {what} after {seconds} s: {dict(counts)}")
        time.sleep(0.001)


threads = [threading.Thread(target=caller) for _ in range(4)]
for t in threads:
    t.start()
control = thttp.InferenceServerClient(URL)
for _ in range(reloads):
    before = answered()
    control.load_model("add")
    # Let calls reach the new version before the next reload.
    wait_answered(before + 4, "after a reload")
during_reloads = answered()

with open(model_file, "wb") as f:
    f.write(b"this is not an onnx model")
try:
    control.load_model("add")
    failure = None
except InferenceServerException as e:
    failure = e.message()
wait_answered(answered() + 20, "after the failed reload")
stop.set()
for t in threads:
    t.join()

index = {entry["name"]: entry for entry in control.get_model_repository_index()}
print(dict(counts), "answered during reloads:", during_reloads, "index:", index.get("add"))
if problems:
    print("FAILED:", problems[:5])
    sys.exit(1)
if failure is None or "load failed for model 'add'" not in failure:
    print("FAILED: the corrupt reload was not refused:", failure)
    sys.exit(1)
entry = index.get("add", {})
if entry.get("state") != "READY" or "reload failed" not in entry.get("reason", ""):
    print("FAILED: the index does not show the old version serving with the reason:", entry)
    sys.exit(1)
print("reload checks passed")
