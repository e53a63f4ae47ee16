"""Triton's add_sub example, as a model.py of the kind corral serves: OUTPUT0 = INPUT0 +
INPUT1, OUTPUT1 = INPUT0 - INPUT1 (FP32 [4]), with a counter of the requests it saw."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        for name in ("INPUT0", "INPUT1"):
            auto_complete_model_config.add_input({"name": name, "data_type": "TYPE_FP32", "dims": [4]})
        for name in ("OUTPUT0", "OUTPUT1"):
            auto_complete_model_config.add_output({"name": name, "data_type": "TYPE_FP32", "dims": [4]})
        auto_complete_model_config.set_max_batch_size(0)
        return auto_complete_model_config

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        self.instance = args["model_instance_name"]
        out = pb_utils.get_output_config_by_name(self.model_config, "OUTPUT0")
        self.out_dtype = pb_utils.triton_string_to_numpy(out["data_type"])
        family = pb_utils.MetricFamily("add_sub_requests", "Requests add_sub saw", pb_utils.MetricFamily.COUNTER)
        self.requests = family.Metric(labels={"model": args["model_name"]})
        pb_utils.Logger.log_info(f"{self.instance} initialized")

    def execute(self, requests):
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            self.requests.increment(1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT0", (in0 + in1).astype(self.out_dtype)),
                pb_utils.Tensor("OUTPUT1", (in0 - in1).astype(self.out_dtype)),
            ]))
        return responses

    def finalize(self):
        pb_utils.Logger.log_info("add_sub finalized")
