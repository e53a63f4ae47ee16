"""Answers Y = X * 3, SAME = X handed on as it came (the stub names it where it lies in the
shared buffer, no copy), its process id and the CPUs its process may run on (every thread's
Cpus_allowed_list, distinct values joined), so a test sees each instance's stub and pinning."""

import os

import numpy as np
import triton_python_backend_utils as pb_utils


def allowed():
    lists = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as f:
            lists.update(line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list"))
    return ";".join(sorted(lists))


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]
        print(f"{self.name} starting in pid {os.getpid()}")
        # The shared buffer (descriptor 4) is sealed: a stub cannot shrink it under the server.
        try:
            os.ftruncate(4, 0)
            raise AssertionError("the shared buffer could be shrunk")
        except PermissionError:
            pass
        # A custom metric, both instances adding to one series on the server's metrics port.
        family = pb_utils.MetricFamily("where_requests_total", "Requests where answered", pb_utils.MetricFamily.COUNTER)
        self.requests = family.Metric(labels={"model": "where", "version": "1"})

    def execute(self, requests):
        responses = []
        for request in requests:
            self.requests.increment(1)
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            assert not x.flags.writeable, "inputs are read-only"
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", x * 3),
                pb_utils.Tensor("SAME", x),
                pb_utils.Tensor("PID", np.array([os.getpid()], dtype=np.int64)),
                pb_utils.Tensor("CPUS", np.array([allowed().encode()], dtype=np.object_)),
            ]))
        return responses
