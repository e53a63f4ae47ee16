"""Calls itself through BLS when X > 0: with one instance, busy with this very call, the
inner call cannot start, and its error (the exec timeout) comes back in the response."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            if pb_utils.get_input_tensor_by_name(request, "X").as_numpy()[0] > 0:
                inner = pb_utils.InferenceRequest(
                    model_name="selfcall", inputs=[pb_utils.Tensor("X", np.zeros(1, np.float32))],
                    requested_output_names=["ERROR"]).exec()
                text = f"{inner.error().code()}: {inner.error().message()}" if inner.has_error() else "no error"
            else:
                text = "inner"
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("ERROR", np.array([text.encode()], dtype=np.object_))]))
        return responses
