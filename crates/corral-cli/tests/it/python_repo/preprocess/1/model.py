"""Preprocessing in plain numpy, as an ensemble's first step: a uint8 HWC image to the FP32
NCHW batch of one that squeezenet takes (scaled, ImageNet's mean and deviation)."""

import numpy as np
import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            data = ((image.transpose(2, 0, 1).astype(np.float32) / 255.0 - MEAN) / STD)[None]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("DATA", data)]))
        return responses
