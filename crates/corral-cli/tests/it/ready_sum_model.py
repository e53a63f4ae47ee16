"""Writes a small ONNX model whose answer shows whether READY reached it as true:
OUTPUT = INPUT0 + INPUT1 when READY is true, else 0 (all [1]; INT32, READY of the type given).
Run with the project's .venv (it has the onnx package).

usage: ready_sum_model.py OUT.onnx BOOL|INT32
"""

import sys

import onnx
from onnx import TensorProto, helper

ready_type = {"BOOL": TensorProto.BOOL, "INT32": TensorProto.INT32}[sys.argv[2]]
inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, [1]) for n in ("INPUT0", "INPUT1")]
inputs.append(helper.make_tensor_value_info("READY", ready_type, [1]))
nodes = [helper.make_node("Add", ["INPUT0", "INPUT1"], ["sum"])]
ready = "READY"
if ready_type != TensorProto.BOOL:
    nodes.append(helper.make_node("Cast", ["READY"], ["ready_bool"], to=TensorProto.BOOL))
    ready = "ready_bool"
zero = helper.make_tensor("zero", TensorProto.INT32, [1], [0])
nodes.append(helper.make_node("Where", [ready, "sum", "zero"], ["OUTPUT"]))
outputs = [helper.make_tensor_value_info("OUTPUT", TensorProto.INT32, [1])]
graph = helper.make_graph(nodes, "ready_sum", inputs, outputs, initializer=[zero])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
