"""Every exception class, raised with the runtime's message; bad inputs never crash the
interpreter and the model keeps serving."""

import re

import numpy as np
import pytest

import corral
from conftest import finish, SQUEEZENET, first_report, run_python, sim_model, start_python


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    (folder / "two").mkdir()
    (folder / "two" / "config.toml").write_text("""
platform = "sim"
[sim]
latency_ms = 1
[[input]]
name = "x"
datatype = "FP32"
shape = [1, 4]
[[input]]
name = "k"
datatype = "INT64"
shape = [1]
[[output]]
name = "y"
datatype = "FP32"
shape = [1, 2]
""")
    return corral.load(folder / "two")


X = np.zeros((1, 4), np.float32)
K = np.ones(1, np.int64)


@pytest.mark.parametrize("call, message", [
    (lambda m: m(X.astype(np.float64), K), "model `two`: input `x` must be FP32, got FP64"),
    (lambda m: m(np.zeros((2, 4), np.float32), K), "model `two`: input `x` must have shape [1, 4], got [2, 4]"),
    (lambda m: m(x=X, kk=K), "model `two`: unknown input `kk`; the model's inputs are x, k"),
    (lambda m: m(X), "model `two`: expected 2 inputs (x, k), got 1"),
    (lambda m: m(X, K, x=X), "model `two`: give inputs by position or by name, not both"),
    (lambda m: m(object(), K),
     "model `two`: input `x` must be an array of float32, got object: float() argument must be a string or a real number, not 'object'"),
    (lambda m: m(np.array(["a"] * 4).reshape(1, 4), K),
     "model `two`: input `x` has dtype <U1, which corral cannot pass; the model expects float32"),
    (lambda m: m({1: X, "k": K}), "model `two`: input names must be strings, got 1"),
], ids=["dtype", "shape", "name", "count", "both", "non-array", "strings", "non-string-name"])
def test_bad_inputs_raise_inference_error_and_the_model_keeps_serving(model, call, message):
    with pytest.raises(corral.InferenceError) as error:
        call(model)
    assert str(error.value) == message
    assert isinstance(error.value, ValueError) and isinstance(error.value, corral.CorralError)
    assert model(X, K).shape == (1, 2), "still serving"


def test_loading_what_is_not_a_model(tmp_path):
    with pytest.raises(corral.ModelLoadError, match=r"cannot load .*/missing.onnx: no such file or folder"):
        corral.load(tmp_path / "missing.onnx")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(corral.ModelLoadError, match=r"notes.txt: is neither an .onnx model, OpenVINO IR \(.xml\), nor a model folder"):
        corral.load(tmp_path / "notes.txt")
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not a protobuf")
    with pytest.raises(corral.ModelLoadError, match=r"cannot load `garbage`: cannot load .*garbage.onnx: "):
        corral.load(tmp_path / "garbage.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(corral.ModelLoadError, match="holds no config.toml, config.pbtxt or <version>/model.onnx"):
        corral.load(tmp_path / "empty")
    assert corral.load(SQUEEZENET) is not None, "nothing loaded was disturbed"


def test_unloaded_models_refuse_calls(model, tmp_path):
    tiny = corral.load(sim_model(tmp_path, "tiny", latency_ms=1))
    tiny(np.zeros((1, 16), np.float32))
    tiny.unload()
    tiny.unload()  # a second unload does nothing
    with pytest.raises(corral.ModelUnloadedError, match=r"model `tiny` is not loaded"):
        tiny(np.zeros((1, 16), np.float32))
    assert repr(tiny) == 'Model("tiny", unloaded)'


def test_cores_held_by_another_process(repo, tmp_path):
    holder = start_python('corral.init(); report(held=True); sys.stdin.read()\n', tmp_path,
                          CORRAL_DEVICE="sim:4", NEURON_RT_NUM_CORES=3)
    try:
        first_report(holder)
        got = run_python("""
try:
    corral.init()
except corral.CoresBusyError as e:
    report(message=str(e), runtime_error=isinstance(e, RuntimeError))
""", tmp_path, CORRAL_DEVICE="sim:4")
    finally:
        finish(holder)
    message = re.sub(r"since \d\d:\d\d:\d\d", "since HH:MM:SS", got["message"])
    assert message.startswith(
        f"requested 4 consecutive cores (default (every core)) on sim:4; longest free run is nc3 (1); "
        f"nc0-nc2 held by pid {holder.pid} (")
    assert "since HH:MM:SS UTC" in message
    assert got["runtime_error"]


def test_malformed_settings_raise_config_error(tmp_path):
    got = run_python("""
errors = {}
for kwargs in [dict(num_cores="x"), dict(device="sim:0")]:
    try:
        corral.init(**kwargs)
    except corral.ConfigError as e:
        errors[str(kwargs)] = str(e)
report(errors=errors)
""", tmp_path)
    assert got["errors"]["{'num_cores': 'x'}"].startswith("num_cores=x is not")
    assert got["errors"]["{'device': 'sim:0'}"] == (
        'device="sim:0" is not valid: device `sim:0` asks for 0 simulated cores\nhint: use 1 to 4096')
    env = run_python("""
try:
    corral.load("x.onnx")
except corral.ConfigError as e:
    report(message=str(e))
""", tmp_path, NEURON_RT_VISIBLE_CORES="4-2", CORRAL_DEVICE="sim:8")
    assert "NEURON_RT_VISIBLE_CORES=4-2" in env["message"]


def test_init_twice_with_other_settings(tmp_path):
    got = run_python("""
corral.init(device="sim:4", num_cores=2)
corral.init(device="sim:4", num_cores=2)  # the same settings: fine
try:
    corral.init(device="sim:4", num_cores=3)
except corral.ConfigError as e:
    report(message=str(e), owned=len(corral.cores()))
""", tmp_path)
    assert got["message"] == (
        "corral already started in this process with device=\"sim:4\", num_cores=\"2\"; it cannot start again with "
        "device=\"sim:4\", num_cores=\"3\"\nhint: call corral.init(...) once, before the first load")
    assert got["owned"] == 2


def test_a_call_that_cannot_start_in_time(repo, tmp_path):
    code = f"MODEL = {str(sim_model(repo, 'slow', latency_ms=1500))!r}\n" + """
import threading
m = corral.load(MODEL)
first = threading.Thread(target=m, args=(x,))
first.start()
wait_until(lambda: sum(i["in_flight"] for i in m.stats()["instances"]) == 1, "the first call holds the core")
try:
    m(x)
except corral.ExecTimeoutError as e:
    report(message=str(e), timeout_error=isinstance(e, TimeoutError))
first.join()
"""
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:1", CORRAL_EXEC_TIMEOUT="0.3")
    assert got["message"].startswith("model `slow` could not start within 0.3 s: its cores stayed busy")
    assert got["timeout_error"]
