"""Runs a model with the onnxruntime Python package, as the reference for corral's engine.

usage: reference.py MODEL OUT_DIR NAME=DTYPE:D1xD2:FILE ...
Writes OUT_DIR/<i>.bin (raw little-endian) per output and prints `name dtype d1xd2` lines.
"""
import sys

import numpy as np
import onnxruntime as ort

model, out_dir, *specs = sys.argv[1:]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
feeds = {}
for spec in specs:
    name, rest = spec.rsplit("=", 1)
    dtype, shape, path = rest.split(":", 2)
    dims = [int(d) for d in shape.split("x")]
    feeds[name] = np.fromfile(path, dtype=dtype).reshape(dims)
for i, (meta, value) in enumerate(zip(session.get_outputs(), session.run(None, feeds))):
    value = np.ascontiguousarray(value)
    value.tofile(f"{out_dir}/{i}.bin")
    print(meta.name, value.dtype, "x".join(str(d) for d in value.shape) or "scalar")
