"""Writes the models the wording checks call (serve_wording.py), each a folder of REPO with
1/model.onnx and Triton's config.pbtxt, in the shapes Triton's own QA models have:

- ident: FP32 identity, max_batch_size 8, dims [-1] (Triton's onnx_zero_1_float32);
- queue: the same behind a dynamic batcher whose queue holds one call (Triton's
  onnx_zero_1_float32_queue);
- strings: two BYTES inputs of [16] to two outputs, max_batch_size 8
  (Triton's onnx_object_int32_int32's shape);
- optional: INPUT0 required, INPUT1 optional, both FP32 [2] (OUTPUT0 = INPUT0).
Run with the project's .venv (it has the onnx package).

usage: wording_models.py REPO
"""

import os
import sys

import onnx
from onnx import TensorProto, helper

repo = sys.argv[1]


def save(name, nodes, inputs, outputs, config):
    os.makedirs(f"{repo}/{name}/1", exist_ok=True)
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, f"{repo}/{name}/1/model.onnx")
    with open(f"{repo}/{name}/config.pbtxt", "w") as f:
        f.write(config)


def value(name, kind, shape):
    return helper.make_tensor_value_info(name, kind, shape)


ident_config = """backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
ident = ([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
         [value("INPUT0", TensorProto.FLOAT, ["b", "n"])], [value("OUTPUT0", TensorProto.FLOAT, ["b", "n"])])
save("ident", *ident, ident_config)
save("queue", *ident, ident_config + """dynamic_batching {
  max_queue_delay_microseconds: 1000000
  preferred_batch_size: [ 8 ]
  default_queue_policy { max_queue_size: 1 }
}
""")
save("strings",
     [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"]), helper.make_node("Identity", ["INPUT1"], ["OUTPUT1"])],
     [value("INPUT0", TensorProto.STRING, ["b", 16]), value("INPUT1", TensorProto.STRING, ["b", 16])],
     [value("OUTPUT0", TensorProto.STRING, ["b", 16]), value("OUTPUT1", TensorProto.STRING, ["b", 16])],
     """backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ 16 ] }, { name: "INPUT1" data_type: TYPE_STRING dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ 16 ] }, { name: "OUTPUT1" data_type: TYPE_STRING dims: [ 16 ] } ]
""")
save("optional",
     [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"]), helper.make_node("Identity", ["INPUT1"], ["OUTPUT1"])],
     [value("INPUT0", TensorProto.FLOAT, [2]), value("INPUT1", TensorProto.FLOAT, [2])],
     [value("OUTPUT0", TensorProto.FLOAT, [2]), value("OUTPUT1", TensorProto.FLOAT, [2])],
     """backend: "onnxruntime"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 2 ] optional: true } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 2 ] } ]
""")
