"""Writes an ONNX model that echoes one input of each unsigned type corral serves:
U16 -> U16_OUT, U32 -> U32_OUT, U64 -> U64_OUT (all [4]). Run with the project's .venv.

usage: unsigned_model.py OUT.onnx
"""

import sys

import onnx
from onnx import TensorProto, helper

types = {"U16": TensorProto.UINT16, "U32": TensorProto.UINT32, "U64": TensorProto.UINT64}
inputs = [helper.make_tensor_value_info(n, t, [4]) for n, t in types.items()]
outputs = [helper.make_tensor_value_info(f"{n}_OUT", t, [4]) for n, t in types.items()]
nodes = [helper.make_node("Identity", [n], [f"{n}_OUT"]) for n in types]
model = helper.make_model(helper.make_graph(nodes, "unsigned", inputs, outputs),
                          opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
