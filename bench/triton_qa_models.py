"""ONNX stand-ins for the few models of Triton's QA that are not ONNX in Triton's own CI (part of
bench/triton_qa.py). Each stand-in computes what Triton's model computes, from that model's own
config.pbtxt (taken from the Triton repository at run time, with `backend: "python"` or
`"pytorch"` changed to `"onnxruntime"`):

  identity CONFIG OUT   output i is input i (Python models simple_identity, string_identity,
                        identity_fp32; the TorchScript nn.Identity pt_identity)
  constant CONFIG OUT   OUTPUT0 = [1.0] whatever the inputs; inputs marked `optional: true`
                        get an initializer, so ONNX Runtime may be called without them
                        (input_all_required, input_optional, input_all_optional)
  densenet CONFIG OUT   data_0 [1,3,224,224] -> fc6_1 [1,1000,1,1] (pool, 1x1 conv): the shape
                        of densenet_onnx, which Triton's CI downloads rather than generates

usage: .venv/bin/python bench/triton_qa_models.py KIND CONFIG OUT [KIND CONFIG OUT ...]
"""

import re
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

ONNX_TYPES = {
    "TYPE_BOOL": TensorProto.BOOL, "TYPE_UINT8": TensorProto.UINT8, "TYPE_INT8": TensorProto.INT8,
    "TYPE_INT16": TensorProto.INT16, "TYPE_INT32": TensorProto.INT32, "TYPE_INT64": TensorProto.INT64,
    "TYPE_FP16": TensorProto.FLOAT16, "TYPE_FP32": TensorProto.FLOAT, "TYPE_FP64": TensorProto.DOUBLE,
    "TYPE_STRING": TensorProto.STRING,
}


def parse_pbtxt(text):
    """A protobuf text file as {field: [values]}, messages as nested dicts (enough for configs)."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.sub(r"#.*", "", text))
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return fields("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                pos += tokens[pos] == ","
            pos += 1
            return items
        return tok.strip('"')

    def fields(end):
        nonlocal pos
        out = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            pos += tokens[pos] == ":"
            v = value()
            out.setdefault(name, []).extend(v if isinstance(v, list) else [v])
            pos += pos < len(tokens) and tokens[pos] == ","
        pos += 1
        return out

    return fields(None)


def tensors(config, kind):
    batch = [None] if int(config.get("max_batch_size", ["0"])[0]) > 0 else []
    for t in config.get(kind, []):
        dims = [None if int(d) < 0 else int(d) for d in t.get("dims", [])]
        yield t["name"][0], ONNX_TYPES[t["data_type"][0]], batch + dims, t.get("optional") == ["true"]


def build(kind, config_path):
    config = parse_pbtxt(open(config_path).read())
    inputs = list(tensors(config, "input"))
    outputs = list(tensors(config, "output"))
    vi = helper.make_tensor_value_info
    inits, nodes = [], []
    if kind == "identity":
        nodes = [helper.make_node("Identity", [i[0]], [o[0]]) for i, o in zip(inputs, outputs)]
    elif kind == "constant":
        one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
        nodes = [helper.make_node("Constant", [], [outputs[0][0]], value=one)]
        inits = [helper.make_tensor(n, t, [0], []) for n, t, _, opt in inputs if opt]
    elif kind == "densenet":
        w = np.linspace(-1, 1, 3000, dtype=np.float32).reshape(1000, 3, 1, 1)
        inits = [onnx.numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("GlobalAveragePool", ["data_0"], ["pooled"]),
                 helper.make_node("Conv", ["pooled", "w"], ["fc6_1"])]
        inputs = [("data_0", TensorProto.FLOAT, [1, 3, 224, 224], False)]
        outputs = [("fc6_1", TensorProto.FLOAT, [1, 1000, 1, 1], False)]
    else:
        raise SystemExit(f"unknown stand-in kind {kind!r}")
    graph = helper.make_graph(nodes, config["name"][0], [vi(n, t, s) for n, t, s, _ in inputs],
                              [vi(n, t, s) for n, t, s, _ in outputs], initializer=inits)
    model = helper.make_model(graph, producer_name="corral-triton-qa",
                              opset_imports=[helper.make_operatorsetid("", 13)])
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 3:
        raise SystemExit(__doc__)
    for kind, config_path, out in zip(args[::3], args[1::3], args[2::3]):
        onnx.save(build(kind, config_path), out)
