"""Writes a small stateless ONNX model that shows which control values reached it:
OUTPUT = INPUT + 10 * START + 100 * END + 1000 * READY, and CORRID_OUT = CORRID (all [1];
INT32, CORRID INT64). Run with the project's .venv (it has the onnx package).

usage: sequence_model.py OUT.onnx
"""

import sys

import onnx
from onnx import TensorProto, helper

names = ["INPUT", "START", "END", "READY"]
inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, [1]) for n in names]
inputs.append(helper.make_tensor_value_info("CORRID", TensorProto.INT64, [1]))
weights = [helper.make_tensor(f"w_{n}", TensorProto.INT32, [1], [w]) for n, w in zip(names[1:], (10, 100, 1000))]
nodes = []
total = "INPUT"
for n in names[1:]:
    nodes.append(helper.make_node("Mul", [n, f"w_{n}"], [f"scaled_{n}"]))
    nodes.append(helper.make_node("Add", [total, f"scaled_{n}"], [f"sum_{n}"]))
    total = f"sum_{n}"
nodes.append(helper.make_node("Identity", [total], ["OUTPUT"]))
nodes.append(helper.make_node("Identity", ["CORRID"], ["CORRID_OUT"]))
outputs = [helper.make_tensor_value_info("OUTPUT", TensorProto.INT32, [1]),
           helper.make_tensor_value_info("CORRID_OUT", TensorProto.INT64, [1])]
graph = helper.make_graph(nodes, "sequence_controls", inputs, outputs, initializer=weights)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
