"""Triton Python models through `corral serve`, as tritonclient calls them: add_sub (no
configuration: its backend from the file name, its signature from auto_complete_config) over
HTTP and gRPC; `where` (config.pbtxt, two instances), whose answers show two stubs, each
pinned inside the server's cores; and two models whose load failed, the repository index
naming the file and line and the error's last line.

usage: serve_python.py HTTP_PORT GRPC_PORT SERVER_CPUS OUT_PIDS_FILE
"""

import json
import sys
import threading
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

http_port, grpc_port, server_cpus, pids_file = sys.argv[1:5]
HTTP = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
GRPC = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")

a = np.arange(4, dtype=np.float32)
b = np.full(4, 0.25, dtype=np.float32)
for client, module in ((HTTP, thttp), (GRPC, tgrpc)):
    inputs = [module.InferInput("INPUT0", [4], "FP32"), module.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
metadata = HTTP.get_model_metadata("add_sub")
assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1"], metadata
config = HTTP.get_model_config("add_sub")
assert config["backend"] == "python", config

# Two instances, two stubs, each inside the server's cores.
seen = {}
lock = threading.Lock()


def caller():
    client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
    x = thttp.InferInput("X", [2], "FP32")
    x.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    for _ in range(40):
        result = client.infer("where", [x])
        np.testing.assert_array_equal(result.as_numpy("Y"), [3.0, 6.0])
        with lock:
            seen[int(result.as_numpy("PID")[0])] = result.as_numpy("CPUS")[0].decode()


threads = [threading.Thread(target=caller) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(seen) == 2, f"calls reached {len(seen)} stubs: {seen}"


def cpus(text):
    found = set()
    for part in text.replace(";", ",").split(","):
        lo, _, hi = part.partition("-")
        found.update(range(int(lo), int(hi or lo) + 1))
    return found


allowed = cpus(server_cpus)
for pid, lists in seen.items():
    assert cpus(lists) <= allowed, f"stub {pid} may run on {lists}, outside the server's {server_cpus}"
first, second = (cpus(lists) for lists in seen.values())
assert not first & second, f"two instances, two cores: the stubs share CPUs {seen}"
with open(pids_file, "w") as f:
    json.dump(sorted(seen), f)

# Failed loads: Triton's index says why, with file:line.
request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/index", data=b"{}", method="POST")
index = {m["name"]: m for m in json.load(urllib.request.urlopen(request))}
syntax = index["syntax"]
assert syntax["state"] == "UNAVAILABLE" and "model.py:5" in syntax["reason"] and "SyntaxError" in syntax["reason"], syntax
raises = index["raises"]
assert "model.py:3" in raises["reason"] and "RuntimeError: the weights file is missing" in raises["reason"], raises
print("python model checks passed:", {pid: lists for pid, lists in seen.items()})
