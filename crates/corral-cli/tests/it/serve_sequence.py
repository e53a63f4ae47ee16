"""Sequences with tritonclient against a running `corral serve` whose `seq` model (see
sequence_model.py) has `sequence_batching` with START, END, READY and CORRID control inputs,
2 instances, and a 2 s idle limit: interleaved sequences over HTTP, a streamed sequence
of 20 requests over gRPC, and Triton's errors for a missing id, a sequence that never
started, and one that idled out. Prints one line per check.

usage: serve_sequence.py HTTP_PORT GRPC_PORT METRICS_PORT
"""

import queue
import sys
import time
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from checks import check, fails


http_port, grpc_port, metrics_port = sys.argv[1:4]
http = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")


def value(module, n):
    i = module.InferInput("INPUT", [1], "INT32")
    i.set_data_from_numpy(np.array([n], np.int32))
    return [i]


def call(client, module, n, sequence_id, start=False, end=False):
    result = client.infer("seq", value(module, n), sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    return int(result.as_numpy("OUTPUT")[0]), int(result.as_numpy("CORRID_OUT")[0])


# Two sequences interleaved; each request sees START/END/READY as its place in its sequence.
got = [
    call(http, thttp, 1, 41, start=True),
    call(http, thttp, 2, 42, start=True),
    call(http, thttp, 3, 41),
    call(http, thttp, 4, 42),
    call(http, thttp, 5, 41, end=True),
    call(http, thttp, 6, 42, end=True),
]
check("interleaved sequences get their controls and ids", got == [
    (1 + 10 + 1000, 41), (2 + 10 + 1000, 42), (3 + 1000, 41), (4 + 1000, 42), (5 + 100 + 1000, 41), (6 + 100 + 1000, 42),
], got)
metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
per_instance = [line for line in metrics.splitlines() if line.startswith('corral_instance_executions_total{model="seq"')]
check("the two sequences ran on one instance each", len(per_instance) == 2 and all(l.endswith(" 3") for l in per_instance),
      per_instance)

fails("a request after END without START", lambda: call(http, thttp, 7, 41),
      "inference request for sequence 41 to model 'seq' must specify the START flag on the first request of the sequence",
      starts=True)
fails("a request without a sequence id", lambda: http.infer("seq", value(thttp, 1)),
      "inference request to model 'seq' must specify a non-zero or non-empty correlation ID", starts=True)
call(http, thttp, 1, 43, start=True)
# No timer ends a sequence: the next request finds it idle past the limit, on the server's
# clock from its last request. Sleeping past the 2 s limit is enough however loaded the
# machine (a load only lengthens the sleep), and a sequence still live would not fail.
time.sleep(2.5)
fails("a sequence that idled out", lambda: call(http, thttp, 2, 43),
      "inference request for sequence 43 to model 'seq' must specify the START flag", starts=True)
fails("a string id with a numeric CORRID input", lambda: call(grpc, tgrpc, 1, "abc", start=True),
      "sequence id `abc` is a string but control input `CORRID` takes a number", starts=True)

# A streamed sequence of 20 requests with ids out of order: answers in order.
answers = queue.Queue()
grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
ids = [str(n) for n in np.random.default_rng(5).permutation(20)]
for n, request_id in enumerate(ids):
    grpc.async_stream_infer("seq", value(tgrpc, n), request_id=request_id, sequence_id=77,
                            sequence_start=n == 0, sequence_end=n == 19)
got = [answers.get(timeout=60) for _ in ids]
grpc.stop_stream()
check("no stream errors", all(e is None for _, e in got), [e for _, e in got if e])
check("stream answers in order", [r.get_response().id for r, _ in got] == ids)
outputs = [int(r.as_numpy("OUTPUT")[0]) for r, _ in got]
expected = [n + 1000 + (10 if n == 0 else 0) + (100 if n == 19 else 0) for n in range(20)]
check("the streamed sequence saw START first and END last", outputs == expected, outputs)

# Triton's sequence batcher takes one row per request; its statistics count batches.
rows = thttp.InferInput("INPUT", [2, 1], "INT32")
rows.set_data_from_numpy(np.array([[1], [2]], np.int32))
fails("a batch of 2 inside a sequence", lambda: http.infer("seqb", [rows], sequence_id=90, sequence_start=True),
      "inference request to model 'seqb' must specify batch-size 1 due to requirements of sequence batcher")
stats = grpc.get_inference_statistics("seq", as_json=True)["model_stats"][0]
batches = stats.get("batch_stats", [])
check("gRPC sequence statistics carry batch_stats", len(batches) == 1 and batches[0]["batch_size"] == "1"
      and batches[0]["compute_infer"]["count"] == stats["execution_count"], stats)
http_stats = http.get_inference_statistics("seq")["model_stats"][0]
check("HTTP sequence statistics carry batch_stats", http_stats["batch_stats"][0]["batch_size"] == 1, http_stats)
print("all checks passed")
