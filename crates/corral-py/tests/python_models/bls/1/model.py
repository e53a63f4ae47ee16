"""BLS: calls model `add_sub` with its inputs and answers with add_sub's OUTPUT0 doubled, or
with add_sub's error as its own; `async def execute` awaits the calls of all its requests."""

import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        calls = [
            pb_utils.InferenceRequest(
                model_name="add_sub",
                inputs=[pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                        pb_utils.get_input_tensor_by_name(request, "INPUT1")],
                requested_output_names=["OUTPUT0"],
            ).async_exec()
            for request in requests
        ]
        responses = []
        for answer in await asyncio.gather(*calls):
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
                continue
            out = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out * 2)]))
        return responses
