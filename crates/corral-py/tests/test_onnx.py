"""Real ONNX models on this machine's real cores, in this process (device ``cpu``): outputs
equal onnxruntime's own, from many threads, from asyncio, and split by DataParallel."""

import asyncio
import concurrent.futures
import gc
import threading

import numpy as np
import onnxruntime
import pytest

import corral
from conftest import MAGIKA, SILERO, SITE, SQUEEZENET

RNG = np.random.default_rng(7)


def reference(path, feeds):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def squeezenet_input():
    return RNG.random((1, 3, 224, 224), dtype=np.float32)


def magika_input(batch=1):
    return RNG.integers(0, 257, size=(batch, 2048), dtype=np.int32)


def silero_inputs():
    return {"input": RNG.standard_normal((1, 512), dtype=np.float32),
            "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}


@pytest.fixture(scope="module")
def squeezenet():
    with corral.multicore_context():
        return corral.load(SQUEEZENET)


@pytest.mark.parametrize("path, feeds", [
    (SQUEEZENET, lambda: {"data_0": squeezenet_input()}),
    (MAGIKA, lambda: {"bytes": magika_input(batch=3)}),
    (SILERO, silero_inputs),
], ids=["squeezenet", "magika", "silero-vad"])
def test_outputs_equal_onnxruntime(path, feeds):
    model = corral.load(path)
    feeds = feeds()
    want = reference(path, feeds)
    got = model.infer(**feeds)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    assert corral.device() == "cpu"
    assert model.instances and all(len(cores) == 1 for cores in model.instances)


def test_positional_named_and_dict_calls_agree(squeezenet):
    x = squeezenet_input()
    by_position = squeezenet(x)
    assert isinstance(by_position, np.ndarray), "one output: an array"
    np.testing.assert_array_equal(by_position, squeezenet(data_0=x))
    np.testing.assert_array_equal(by_position, squeezenet({"data_0": x}))
    np.testing.assert_array_equal(by_position, squeezenet.infer(x)["softmaxout_1"])
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(by_position, squeezenet(strided)), "other layouts are converted"


class ArrayLike:
    """Anything with __array__ (a CPU torch.Tensor, say) works without importing its library."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


def test_array_likes_and_lists(squeezenet):
    x = squeezenet_input()
    np.testing.assert_array_equal(squeezenet(ArrayLike(x)), squeezenet(x))
    np.testing.assert_array_equal(squeezenet(x.tolist()), squeezenet(x)), "a list takes the model's dtype"


def test_one_model_shared_by_16_threads(squeezenet):
    inputs = [squeezenet_input() for _ in range(16)]
    want = [reference(SQUEEZENET, {"data_0": x})["softmaxout_1"] for x in inputs]
    before = squeezenet.stats()["executions"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda x: squeezenet(x), inputs))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    stats = squeezenet.stats()
    assert stats["executions"] - before == 16
    assert all(i["executions"] > 0 for i in stats["instances"]), "both replicas ran calls"


def test_asyncio_gather_of_100_calls(squeezenet):
    x = squeezenet_input()
    want = squeezenet(x)

    async def main():
        loop_thread = threading.get_ident()
        results = await asyncio.gather(*[squeezenet.infer_async(x) for _ in range(100)])
        assert threading.get_ident() == loop_thread
        return results

    results = asyncio.run(main())
    assert len(results) == 100
    for result in results:
        np.testing.assert_array_equal(result["softmaxout_1"], want)


def test_an_input_read_in_place_lives_until_its_call_is_done(squeezenet):
    # C-contiguous inputs reach the engine without a copy; the call keeps the array alive
    # even when the caller's last reference is gone before the engine runs.
    want = squeezenet(np.full((1, 3, 224, 224), 0.25, np.float32))

    async def main():
        futures = [squeezenet.infer_async(np.full((1, 3, 224, 224), 0.25, np.float32)) for _ in range(8)]
        gc.collect()
        return await asyncio.gather(*futures)

    for result in asyncio.run(main()):
        np.testing.assert_array_equal(result["softmaxout_1"], want)


def test_an_output_reads_onnxruntimes_buffer_in_place_and_outlives_its_model():
    # Outputs are not copied: the array's memory is ONNX Runtime's output value, which a
    # corral object (the array's base) keeps alive, past the model's unload.
    model = corral.load(SQUEEZENET)
    x = squeezenet_input()
    out = model.infer(x)["softmaxout_1"]
    root = out
    while isinstance(root, np.ndarray):
        assert not root.flags.owndata
        root = root.base
    assert type(root).__name__ == "SharedBuffer", type(root)
    want = reference(SQUEEZENET, {"data_0": x})["softmaxout_1"]
    del model
    gc.collect()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    out += 1  # the caller's own buffer now: writing it touches nothing else
    np.testing.assert_allclose(out, want + 1, rtol=1e-5, atol=1e-5)


def test_asyncio_errors_arrive_through_the_future(squeezenet):
    async def main():
        with pytest.raises(corral.InferenceError, match="must be FP32, got FP64"):
            await squeezenet.infer_async(np.zeros((1, 3, 224, 224), np.float64))

    asyncio.run(main())


def test_data_parallel_batch_of_8_equals_the_unsplit_result():
    model = corral.load(MAGIKA)
    batch = magika_input(batch=8)
    whole = model(batch)
    parallel = corral.DataParallel(model)
    assert parallel.device_ids == [0, 1]
    np.testing.assert_array_equal(parallel(batch), whole)
    assert [r.instances for r in parallel.replicas] == [[(0,)], [(1,)]]
    assert all(r.stats()["executions"] == 1 for r in parallel.replicas), "each replica ran half"


def test_data_parallel_on_a_fixed_batch_model(squeezenet):
    batch = RNG.random((5, 3, 224, 224), dtype=np.float32)
    want = np.concatenate([squeezenet(batch[i:i + 1]) for i in range(5)])
    parallel = corral.DataParallel(squeezenet, device_ids=["nc:0", "nc:1"])
    np.testing.assert_allclose(parallel(batch), want, rtol=1e-6, atol=1e-6)
    parallel.disable_dynamic_batching()
    with pytest.raises(ValueError, match="a replica's batch is 3 along dim 0 but the model takes 1"):
        parallel(batch)
    parallel.split_size = 1
    np.testing.assert_allclose(parallel(batch), want, rtol=1e-6, atol=1e-6)


def test_set_neuron_cores_moves_a_model_under_calls():
    model = corral.load(SQUEEZENET)
    x = squeezenet_input()
    want = model(x)
    stop = threading.Event()
    failures = []

    def call():
        while not stop.is_set():
            try:
                np.testing.assert_array_equal(model(x), want)
            except Exception as error:  # noqa: BLE001 (every failure counts)
                failures.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        corral.set_neuron_cores(model, start_nc=1)
        assert model.instances == [(1,)]
        corral.set_multicore(model)
        assert model.instances == [(0,), (1,)]
        corral.set_neuron_cores(model, 0, 1)
        assert model.instances == [(0,)]
    finally:
        stop.set()
        caller.join()
    assert failures == [], "calls kept being answered while the model moved"


def test_stats_and_cores(squeezenet):
    before = squeezenet.stats()
    squeezenet(squeezenet_input())
    stats = squeezenet.stats()
    assert stats["requests"] == before["requests"] + 1 and stats["failures"] == before["failures"]
    assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert [i["cores"] for i in stats["instances"]] == [[0], [1]]
    cores = corral.cores()
    assert [c["index"] for c in cores] == [0, 1]
    assert all(c["cpus"] for c in cores), "real cores have CPUs"
    assert any(squeezenet.name in c["models"] and c["executions"] > 0 and c["busy_seconds"] > 0 for c in cores)


def test_strings_and_halves_round_trip(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def value(name, kind):
        return helper.make_tensor_value_info(name, kind, ["n"])

    nodes = [helper.make_node("Identity", ["text"], ["text_out"]),
             helper.make_node("Cast", ["half"], ["half_text"], to=TensorProto.STRING)]
    graph = helper.make_graph(nodes, "typed",
                              [value("text", TensorProto.STRING), value("half", TensorProto.FLOAT16)],
                              [value("text_out", TensorProto.STRING), value("half_text", TensorProto.STRING)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "typed.onnx"
    onnx.save(model, path)
    loaded = corral.load(path)
    text = np.array([b"abc", "caf\u00e9", b""], dtype=object)
    got = loaded.infer(text=text, half=np.array([0.5, -2.0, 1024.0], np.float16))
    assert got["text_out"].dtype == object and got["text_out"].tolist() == [b"abc", "caf\u00e9".encode(), b""]
    assert [float(t) for t in got["half_text"]] == [0.5, -2.0, 1024.0]
    with pytest.raises(corral.InferenceError, match="must hold bytes or str"):
        loaded.infer(text=np.array([1, 2], dtype=object), half=np.zeros(2, np.float16))


def test_an_elastic_model_runs_a_lone_call_on_both_real_cores():
    with corral.multicore_context(), pytest.warns(UserWarning, match="shares nc0, nc1"):
        model = corral.load(SQUEEZENET, elastic=True)  # beside the module's squeezenet
    assert [i["cores"] for i in model.stats()["instances"]] == [[0], [1]]
    x = squeezenet_input()
    want = reference(SQUEEZENET, {"data_0": x})["softmaxout_1"]

    def executions():
        return [c["executions"] for c in corral.cores()]

    before = executions()
    got = model.infer(data_0=x)["softmaxout_1"]
    after = executions()
    # One call, executed once, on a gang of both cores: each core counts it.
    assert sum(i["executions"] for i in model.stats()["instances"]) == 1
    assert [a - b for a, b in zip(after, before)] == [1, 1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_engine_runs_a_model_on_the_engine_named_and_refuses_others(tmp_path):
    import subprocess
    import sys

    x = np.random.default_rng(4).random((2, 3, 48, 192), dtype=np.float32)
    source = str(SITE / "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    ir = tmp_path / "cls.xml"
    subprocess.run([sys.executable, "-c", "import sys, openvino as ov; "
                    "ov.save_model(ov.convert_model(sys.argv[1]), sys.argv[2], compress_to_fp16=False)", source, str(ir)],
                   check=True)
    on_ort = corral.load(source, name="cls_ort", engine="onnxruntime")
    on_ov = corral.load(source, name="cls_ov", engine="openvino")
    as_ir = corral.load(ir, name="cls_ir")
    expected = list(on_ort.infer({"x": x}).values())[0]
    for model in (on_ov, as_ir):
        got = list(model.infer({"x": x}).values())[0]
        assert np.all(np.abs(got - expected) <= 1e-4 + 1e-3 * np.abs(expected)), model
    with pytest.raises(corral.ConfigError, match="engine = `tensorrt` is not an engine; use onnxruntime, openvino, tract or auto"):
        corral.load(source, name="cls_bad", engine="tensorrt")
