import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        x = pb_utils.get_input_tensor_by_name(requests[0], "X").as_numpy()
        if x[0] < 0:
            os._exit(3)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 1)])]
