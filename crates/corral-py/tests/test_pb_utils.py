"""Triton's `triton_python_backend_utils`, as corral ships it: `model.py` files (tests/
python_models, Triton's own kind: add_sub, a decoupled model, an async BLS model) driven by
pytest with hand-made requests and no server, through both import names."""

import asyncio
import importlib.util
import json
import logging
import pathlib

import numpy as np
import pytest

import triton_python_backend_utils as pb_utils
from corral import pb_utils as corral_pb_utils

MODELS = pathlib.Path(__file__).parent / "python_models"


def load(name):
    spec = importlib.util.spec_from_file_location(f"model_{name}", MODELS / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


def args(name, config):
    return {"model_config": json.dumps(config), "model_instance_kind": "CPU", "model_instance_name": f"{name}_0_0",
            "model_instance_device_id": "0", "model_repository": str(MODELS / name), "model_version": "1",
            "model_name": name}


def add_sub_config():
    config = pb_utils.ModelConfig({"name": "add_sub"})
    return load("add_sub").auto_complete_config(config).as_dict()


def test_both_import_names_are_one_module():
    assert pb_utils is corral_pb_utils
    assert pb_utils.TritonError.INVALID_ARG == 3 and pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL == 1


def test_add_sub_auto_completes_initializes_and_executes(caplog):
    config = add_sub_config()
    assert [i["name"] for i in config["input"]] == ["INPUT0", "INPUT1"]
    assert config["output"][0] == {"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}
    model = load("add_sub")
    with caplog.at_level(logging.INFO, logger="triton_python_backend_utils"):
        model.initialize(args("add_sub", config))
    assert "add_sub_0_0 initialized" in caplog.text
    a, b = np.arange(4, dtype=np.float32), np.full(4, 0.5, dtype=np.float32)
    requests = [pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("INPUT0", a * k), pb_utils.Tensor("INPUT1", b)],
                                          requested_output_names=["OUTPUT0", "OUTPUT1"], request_id=str(k))
                for k in (1, 2)]
    responses = model.execute(requests)
    assert len(responses) == 2
    for k, response in zip((1, 2), responses):
        assert not response.has_error()
        np.testing.assert_array_equal(pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy(), a * k + b)
        np.testing.assert_array_equal(pb_utils.get_output_tensor_by_name(response, "OUTPUT1").as_numpy(), a * k - b)
        assert pb_utils.get_output_tensor_by_name(response, "missing") is None
    # Its custom metric counts what it saw, read back by the test.
    family = next(f for f in pb_utils.MetricFamily.families if f.name == "add_sub_requests")
    assert family.metrics[-1].value() == 2 and family.metrics[-1].labels == {"model": "add_sub"}


def test_auto_complete_refuses_what_contradicts_the_configuration():
    config = pb_utils.ModelConfig({"name": "m", "max_batch_size": 8,
                                   "input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [4]}]})
    with pytest.raises(ValueError, match="configuration specified max_batch_size 8"):
        config.set_max_batch_size(4)
    with pytest.raises(ValueError, match="INPUT0' has data_type TYPE_INT32"):
        config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
    with pytest.raises(ValueError, match="is missing 'dims' property"):
        config.add_output({"name": "OUT", "data_type": "TYPE_FP32"})
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": True})
    assert config.as_dict()["dynamic_batching"] == {}
    assert pb_utils.using_decoupled_model_transaction_policy(config.as_dict())


def test_a_decoupled_model_answers_through_its_sender_and_the_test_reads_it():
    model = load("repeat")
    model.initialize(args("repeat", {"name": "repeat", "model_transaction_policy": {"decoupled": True}}))
    assert model.decoupled
    request = pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("IN", np.array([4, 5, 6], dtype=np.int32))])
    assert model.execute([request]) is None
    sender = request.get_response_sender()
    assert [r.output_tensors()[0].as_numpy().tolist() for r in sender.responses] == [[4], [5], [6]]
    assert sender.flags == [0, 0, 0, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL]
    with pytest.raises(pb_utils.TritonModelException, match="Response sender has been closed"):
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    empty = pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("IN", np.array([], dtype=np.int32))])
    model.execute([empty])
    (response,) = empty.get_response_sender().responses
    assert response.error().code() == pb_utils.TritonError.INVALID_ARG
    assert response.error().message() == "IN is empty: nothing to repeat"


def test_bls_without_a_server_answers_so_and_with_a_test_server_calls_it():
    model = load("bls")
    request = pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("INPUT0", np.ones(4, np.float32)),
                                                pb_utils.Tensor("INPUT1", np.ones(4, np.float32))])
    (response,) = asyncio.run(model.execute([request]))
    assert response.has_error() and response.error().code() == pb_utils.TritonError.UNAVAILABLE
    assert "no server is attached" in response.error().message()
    with pytest.raises(pb_utils.TritonModelException, match="no server is attached"):
        pb_utils.load_model("add_sub")
    (answer,) = list(pb_utils.InferenceRequest(model_name="x").exec(decoupled=True))
    assert answer.has_error()

    # A test's own server: add_sub itself, run in process.
    add_sub = load("add_sub")
    add_sub.initialize(args("add_sub", add_sub_config()))
    seen = []

    class Server:
        def exec(self, request, decoupled):
            seen.append((request.model_name(), request.requested_output_names()))
            if request.model_name() != "add_sub":
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"Request for unknown model: '{request.model_name()}' is not found", pb_utils.TritonError.NOT_FOUND))
            return add_sub.execute([request])[0]

    pb_utils.set_server(Server())
    try:
        (response,) = asyncio.run(model.execute([request]))
        np.testing.assert_array_equal(response.output_tensors()[0].as_numpy(), np.full(4, 4.0, np.float32))
        assert seen == [("add_sub", ["OUTPUT0"])]
        unknown = pb_utils.InferenceRequest(model_name="nope").exec()
        assert unknown.error().code() == pb_utils.TritonError.NOT_FOUND
    finally:
        pb_utils.set_server(None)


def test_tensors_and_bytes_round_trip():
    array = np.arange(6, dtype=np.int64).reshape(2, 3)
    tensor = pb_utils.Tensor("t", array)
    assert tensor.name() == "t" and tensor.is_cpu() and tensor.shape() == [2, 3]
    back = pb_utils.Tensor.from_dlpack("u", tensor.to_dlpack())
    np.testing.assert_array_equal(back.as_numpy(), array)
    np.testing.assert_array_equal(pb_utils.Tensor.from_dlpack("v", array).as_numpy(), array)
    words = np.array([b"corral", b"", "core".encode()], dtype=np.object_)
    wire = pb_utils.serialize_byte_tensor(words)
    assert bytes(wire[:4]) == (6).to_bytes(4, "little")
    assert pb_utils.deserialize_bytes_tensor(wire).tolist() == words.tolist()
    with pytest.raises(pb_utils.TritonModelException, match="expected a numpy array"):
        pb_utils.Tensor("bad", [1, 2])
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_


def test_metrics_keep_their_kind():
    gauge = pb_utils.MetricFamily("g", "a gauge", pb_utils.MetricFamily.GAUGE).Metric(labels={"k": "v"})
    gauge.set(3.5)
    gauge.increment(-1)
    assert gauge.value() == 2.5
    counter = pb_utils.MetricFamily("c", "a counter", pb_utils.MetricFamily.COUNTER).Metric()
    with pytest.raises(pb_utils.TritonModelException, match="must not be negative"):
        counter.increment(-1)
    with pytest.raises(pb_utils.TritonModelException, match="only a gauge is set"):
        counter.set(1)
    histogram = pb_utils.MetricFamily("h", "a histogram", pb_utils.MetricFamily.HISTOGRAM).Metric(buckets=[1, 10])
    for v in (0.5, 5, 50):
        histogram.observe(v)
    assert histogram.value() == {"count": 3, "sum": 55.5, "buckets": [1, 1, 1]}
