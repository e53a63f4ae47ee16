"""Writes a model repository of small ONNX models over the datatypes beyond the usual
floats, for tritonclient tests. Run with the project's .venv.

  unsigned  U16, U32, U64 [4] -> U16_OUT, U32_OUT, U64_OUT (Identity)
  strings   TEXT BYTES [-1] -> TEXT_OUT (Identity: a string identity model)
  texts     N INT64 [-1] -> TEXT BYTES (Cast to string: a string-output model)
  halves    H FP16 [4], B BF16 [4] -> H_OUT, B_OUT (Identity)
  classes   X FP32 [batch, 5] -> PROBS (Identity), max_batch_size 4, PROBS labelled by
            labels.txt (cat, dog, emu, fox, gnu), X declared FORMAT_NONE

usage: typed_models.py REPO
"""

import os
import sys

import onnx
from onnx import TensorProto, helper


def save(repo, name, inputs, outputs, nodes, config=None, files=None):
    folder = os.path.join(repo, name)
    os.makedirs(os.path.join(folder, "1"), exist_ok=True)
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(folder, "1", "model.onnx"))
    if config is not None:
        with open(os.path.join(folder, "config.pbtxt"), "w") as f:
            f.write(config)
    for file, text in (files or {}).items():
        with open(os.path.join(folder, file), "w") as f:
            f.write(text)


def tensor(name, kind, shape):
    return helper.make_tensor_value_info(name, kind, shape)


def identity(pairs):
    return [helper.make_node("Identity", [i], [o]) for i, o in pairs]


repo = sys.argv[1]
unsigned = {"U16": TensorProto.UINT16, "U32": TensorProto.UINT32, "U64": TensorProto.UINT64}
save(repo, "unsigned",
     [tensor(n, t, [4]) for n, t in unsigned.items()],
     [tensor(f"{n}_OUT", t, [4]) for n, t in unsigned.items()],
     identity((n, f"{n}_OUT") for n in unsigned))
save(repo, "strings", [tensor("TEXT", TensorProto.STRING, ["n"])],
     [tensor("TEXT_OUT", TensorProto.STRING, ["n"])], identity([("TEXT", "TEXT_OUT")]))
save(repo, "texts", [tensor("N", TensorProto.INT64, ["n"])], [tensor("TEXT", TensorProto.STRING, ["n"])],
     [helper.make_node("Cast", ["N"], ["TEXT"], to=TensorProto.STRING)])
save(repo, "halves",
     [tensor("H", TensorProto.FLOAT16, [4]), tensor("B", TensorProto.BFLOAT16, [4])],
     [tensor("H_OUT", TensorProto.FLOAT16, [4]), tensor("B_OUT", TensorProto.BFLOAT16, [4])],
     identity([("H", "H_OUT"), ("B", "B_OUT")]))
save(repo, "classes", [tensor("X", TensorProto.FLOAT, ["batch", 5])],
     [tensor("PROBS", TensorProto.FLOAT, ["batch", 5])], identity([("X", "PROBS")]),
     config="""name: "classes"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 format: FORMAT_NONE dims: [ 5 ] } ]
output [ { name: "PROBS" data_type: TYPE_FP32 dims: [ 5 ] label_filename: "labels.txt" } ]
""",
     files={"labels.txt": "cat\ndog\nemu\nfox\ngnu\n"})
