"""A decoupled model: one response per value of IN (OUT = the value), the first at once, the
others only once the file FILE names exists (the test creates it after it received the first,
so a response that were held back until the end would never let it), then the final flag alone,
sent from a thread after `execute` returned. FILE empty: no waiting. A negative value is
answered with an error response, and the request goes on."""

import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def respond(sender, values, path):
    for i, value in enumerate(values):
        if i == 1 and path:
            deadline = time.monotonic() + 30
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.01)
        if value < 0:
            # An error response that does not end the request: the next ones still come.
            error = pb_utils.TritonError(f"{value} is negative", pb_utils.TritonError.INVALID_ARG)
            sender.send(pb_utils.InferenceResponse(error=error))
            continue
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([value], dtype=np.int32))]))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().tolist()
            path = pb_utils.get_input_tensor_by_name(request, "FILE").as_numpy()[0].decode()
            threading.Thread(target=respond, args=(request.get_response_sender(), values, path)).start()
        return None
