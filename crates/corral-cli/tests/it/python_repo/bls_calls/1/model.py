"""BLS calls of every kind, reported as JSON for the test to check: sync `exec` to the ONNX
model `add` and to the Python model `add_sub`, `exec(decoupled=True)` to `add` and to the
decoupled model `waiter`, a call to a model that does not exist, one with a wrong input and one
to a decoupled model without `decoupled=True` (their errors come back in the response), and 64
`async_exec` calls at once."""

import asyncio
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def add(x, y, **kwargs):
    return pb_utils.InferenceRequest(
        model_name="add", inputs=[pb_utils.Tensor("x", x), pb_utils.Tensor("y", y)],
        requested_output_names=["sum"], **kwargs)


def error_of(response):
    error = response.error()
    return None if error is None else {"message": error.message(), "code": error.code()}


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            report = {}
            answer = add(x, x).exec()
            report["onnx"] = (answer.error() is None
                              and bool(np.array_equal(pb_utils.get_output_tensor_by_name(answer, "sum").as_numpy(), x + x)))
            pair = pb_utils.InferenceRequest(
                model_name="add_sub",
                inputs=[pb_utils.Tensor("INPUT0", np.arange(4, dtype=np.float32)),
                        pb_utils.Tensor("INPUT1", np.ones(4, dtype=np.float32))],
                requested_output_names=["OUTPUT1"]).exec()
            outputs = [t.name() for t in pair.output_tensors()]
            report["python"] = (outputs == ["OUTPUT1"] and
                                pb_utils.get_output_tensor_by_name(pair, "OUTPUT1").as_numpy().tolist() == [-1, 0, 1, 2])
            streamed = list(add(x, x).exec(decoupled=True))
            report["decoupled"] = [len(r.output_tensors()) for r in streamed]
            missing = pb_utils.InferenceRequest(model_name="nowhere", inputs=[pb_utils.Tensor("x", x)],
                                                requested_output_names=["sum"]).exec()
            report["missing"] = error_of(missing)
            wrong = add(x.astype(np.float64), x).exec()
            report["wrong_input"] = error_of(wrong)
            many = await asyncio.gather(*(add(x, np.full_like(x, i)).async_exec() for i in range(64)))
            report["async"] = sum(
                bool(np.array_equal(pb_utils.get_output_tensor_by_name(r, "sum").as_numpy(), x + i))
                for i, r in enumerate(many) if r.error() is None)
            report["version"] = error_of(add(x, x, model_version=7).exec())
            # The decoupled model `waiter`: its responses as they come, then its empty final one;
            # without decoupled=True, python_backend's error.
            waiter = pb_utils.InferenceRequest(
                model_name="waiter",
                inputs=[pb_utils.Tensor("IN", np.array([5, 6], dtype=np.int32)),
                        pb_utils.Tensor("FILE", np.array([b""], dtype=np.object_))],
                requested_output_names=["OUT"])
            report["streamed"] = [[t.as_numpy().tolist() for t in r.output_tensors()] for r in waiter.exec(decoupled=True)]
            report["not_decoupled"] = error_of(waiter.exec())
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("REPORT", np.array([json.dumps(report).encode()], dtype=np.object_))]))
        return responses
