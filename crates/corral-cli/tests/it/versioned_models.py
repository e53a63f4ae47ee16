"""Writes the models of serve_exact.py: four folders of versions 1, 2 and 3 (y = x + 10 *
version, FP32 [4]) under the four kinds of version_policy, one whose specific version is
missing, a two-input model (y = a + b), and spare model files under REPO/.spare (hidden from
the repository) that the client copies in to change a version. Run with the project's .venv.

usage: versioned_models.py REPO
"""

import os
import sys

import onnx
from onnx import TensorProto, helper

repo = sys.argv[1]


def save(path, nodes, inputs, outputs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    graph = helper.make_graph(nodes, "m", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def adder(path, value):
    """y = x + value, FP32 [4]."""
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [value])
    nodes = [helper.make_node("Constant", [], ["c"], value=const), helper.make_node("Add", ["x", "c"], ["y"])]
    save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])


TENSORS = 'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
policies = {
    "latest1": "",
    "latest2": "version_policy: { latest: { num_versions: 2 } }",
    "every": "version_policy: { all: {} }",
    "chosen": "version_policy: { specific: { versions: [1, 3] } }",
    "bad_policy": "version_policy: { specific: { versions: [1, 4] } }",
}
for name, policy in policies.items():
    for v in (1, 2, 3):
        adder(f"{repo}/{name}/{v}/model.onnx", 10.0 * v)
    with open(f"{repo}/{name}/config.pbtxt", "w") as f:
        f.write(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n{TENSORS}{policy}\n')
adder(f"{repo}/.spare/plus300.onnx", 300.0)
save(f"{repo}/pair/1/model.onnx", [helper.make_node("Add", ["a", "b"], ["y"])],
     [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in "ab"],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
