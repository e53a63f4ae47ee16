"""Writes a repository of models that run on OpenVINO into the folder given: `ir`, Triton's
OpenVINO backend reading IR (model.xml and model.bin made here by openvino.convert_model from
rapidocr's text-direction classifier), and `picked`, the same ONNX file under the ONNX Runtime
platform with `corral.engine` asking for OpenVINO, and `timed`, the same again with
`corral.engine: "auto"` (the engines timed on its core). The ONNX file is copied beside them as
`reference.onnx`, for the client's onnxruntime.

usage: openvino_models.py REPO
"""

import glob
import os
import shutil
import sys

import openvino as ov

repo = sys.argv[1]
site = glob.glob(os.path.join(sys.prefix, "lib/python3*/site-packages"))[0]
source = os.path.join(site, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
shutil.copy(source, os.path.join(repo, "reference.onnx"))

os.makedirs(os.path.join(repo, "ir/1"))
ov.save_model(ov.convert_model(source), os.path.join(repo, "ir/1/model.xml"), compress_to_fp16=False)
with open(os.path.join(repo, "ir/config.pbtxt"), "w") as f:
    f.write('backend: "openvino"\n')

os.makedirs(os.path.join(repo, "picked/1"))
shutil.copy(source, os.path.join(repo, "picked/1/model.onnx"))
with open(os.path.join(repo, "picked/config.pbtxt"), "w") as f:
    f.write('platform: "onnxruntime_onnx"\nparameters { key: "corral.engine" value { string_value: "openvino" } }\n')

os.makedirs(os.path.join(repo, "timed/1"))
shutil.copy(source, os.path.join(repo, "timed/1/model.onnx"))
with open(os.path.join(repo, "timed/config.pbtxt"), "w") as f:
    f.write('platform: "onnxruntime_onnx"\nparameters { key: "corral.engine" value { string_value: "auto" } }\n')
