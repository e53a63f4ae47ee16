"""Model control from a model (python_backend's model loading API): `is_model_ready`,
`unload_model` and `load_model` of the ONNX model `spare`, a load of `spare_copy` with a
configuration and the model file given as bytes, the ensemble `classify` unloaded with its
dependents, itself (then an unload while its own calls drain), and each error's words,
reported as JSON; from `initialize`, readiness is answered and a load refused."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def said(action):
    """What `action` returned, or the words of the TritonModelException it raised."""
    try:
        return action()
    except pb_utils.TritonModelException as error:
        return {"error": error.message()}


class TritonPythonModel:
    def initialize(self, args):
        self.repository = os.path.dirname(args["model_repository"])  # the model's own folder
        self.at_start = {
            "ready": said(lambda: pb_utils.is_model_ready("control")),
            "load": said(lambda: pb_utils.load_model("spare")),
        }

    def execute(self, requests):
        report = {"initialize": self.at_start}
        report["ready"] = said(lambda: pb_utils.is_model_ready("spare"))
        report["ready_version"] = said(lambda: pb_utils.is_model_ready("spare", "1"))
        report["missing"] = said(lambda: pb_utils.is_model_ready("nowhere"))
        report["bad_version"] = said(lambda: pb_utils.is_model_ready("spare", "abc"))
        report["unload"] = said(lambda: pb_utils.unload_model("spare"))
        report["after_unload"] = said(lambda: pb_utils.is_model_ready("spare"))
        report["load"] = said(lambda: pb_utils.load_model("spare"))
        report["after_load"] = said(lambda: pb_utils.is_model_ready("spare"))
        report["load_missing"] = said(lambda: pb_utils.load_model("nowhere"))
        report["files_not_dict"] = said(lambda: pb_utils.load_model("spare", files=[b"x"]))
        report["key_not_file"] = said(lambda: pb_utils.load_model(
            "spare_copy", config='{"platform": "onnxruntime_onnx"}', files={"1/model.onnx": b"x"}))
        with open(os.path.join(self.repository, "spare", "1", "model.onnx"), "rb") as f:
            onnx = f.read()
        report["copy"] = said(lambda: pb_utils.load_model(
            "spare_copy", config='{"platform": "onnxruntime_onnx"}', files={"file:1/model.onnx": onnx}))
        x = np.full((3, 4, 5), 2.0, dtype=np.float32)  # add's shapes
        answer = pb_utils.InferenceRequest(model_name="spare_copy", inputs=[
            pb_utils.Tensor("x", x), pb_utils.Tensor("y", x)], requested_output_names=["sum"]).exec()
        report["copy_sum"] = answer.error().message() if answer.has_error() else float(
            pb_utils.get_output_tensor_by_name(answer, "sum").as_numpy().flat[0])
        report["copy_unload"] = said(lambda: pb_utils.unload_model("spare_copy"))
        # An ensemble with its dependents: its steps go too (no other loaded ensemble uses them).
        report["dependents"] = said(lambda: pb_utils.unload_model("classify", unload_dependents=True))
        report["after_dependents"] = {name: said(lambda: pb_utils.is_model_ready(name))
                                      for name in ("classify", "preprocess", "squeezenet", "add")}
        # Itself, last: answered once it takes no new calls; this call still ends.
        report["itself"] = said(lambda: pb_utils.unload_model("control"))
        # That unload holds the model control while it drains this model's calls, this one
        # among them: a load or unload asked now gets an error after CORRAL_EXEC_TIMEOUT.
        report["while_draining"] = said(lambda: pb_utils.unload_model("spare"))
        text = np.array([json.dumps(report).encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("REPORT", text)]) for _ in requests]
