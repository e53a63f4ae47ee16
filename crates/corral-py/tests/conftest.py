"""Shared by the Python tests: real model files, simulated model folders, and child Python
processes for everything that depends on how a process took its cores (the runtime starts
once per process, as Neuron's does).

The pytest process itself runs on the real ``cpu`` device with a private lock folder, so the
in-process tests pin real threads to this machine's cores without touching anyone else's
registry.
"""

import json
import os
import queue
import pathlib
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading

import pytest

for _name in list(os.environ):
    if _name.startswith(("CORRAL_", "NEURON_RT_", "NEURONCORE_")):
        del os.environ[_name]
os.environ["CORRAL_LOCK_DIR"] = tempfile.mkdtemp(prefix="corral-pytest-")
os.environ["CORRAL_DEVICE"] = "cpu"
# Tests that are not about the engine's choice name theirs (never a timing's outcome).
os.environ["CORRAL_ONNX_ENGINE"] = "onnxruntime"

SITE = pathlib.Path(sysconfig.get_paths()["purelib"])
SQUEEZENET = SITE / "onnx/backend/test/data/light/light_squeezenet.onnx"
MAGIKA = SITE / "magika/models/standard_v3_3/model.onnx"
SILERO = SITE / "silero_vad/data/silero_vad.onnx"


def sim_model(folder: pathlib.Path, name: str, *, cores: int = 1, latency_ms: float = 10, switch_ms: float = 0,
              shape=(1, 16), extra: str = "") -> pathlib.Path:
    """A simulated model folder (``config.toml``) with one FP32 input ``x`` and output ``y``."""
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(textwrap.dedent(f"""\
        platform = "sim"
        cores = {cores}
        {extra}
        [sim]
        latency_ms = {latency_ms}
        switch_ms = {switch_ms}

        [[input]]
        name = "x"
        datatype = "FP32"
        shape = {list(shape)}

        [[output]]
        name = "y"
        datatype = "FP32"
        shape = [{shape[0]}, 4]
        """))
    return path


ROOT = pathlib.Path(__file__).resolve().parents[3]


def corral_bin() -> pathlib.Path:
    """The ``corral`` binary ``./scripts/setup`` built (else a debug build)."""
    for build in ("release", "debug"):
        path = ROOT / "target" / build / "corral"
        if path.exists():
            return path
    raise AssertionError("no target/release/corral: run ./scripts/setup first")


def corral_ls(lock_dir, device: str) -> dict:
    """``corral ls --json`` of ``device`` in the registry under ``lock_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_LOCK_DIR"] = str(lock_dir)
    done = subprocess.run([corral_bin(), "ls", "--json", "--device", device], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


TEST_SKIP_ENV = "CORRAL_TEST_SKIP"


def cannot_run(capability: str, reason: str):
    """This machine lacks ``capability``: the test fails with ``reason``, unless
    ``CORRAL_TEST_SKIP`` (a comma-separated list; CI never sets it) names the capability,
    in which case it is skipped."""
    listed = [c.strip() for c in os.environ.get(TEST_SKIP_ENV, "").split(",")]
    if capability in listed:
        pytest.skip(f"{TEST_SKIP_ENV} lists {capability}: {reason}")
    pytest.fail(f"{reason}\nhint: this test needs {capability}; set {TEST_SKIP_ENV}={capability} to skip it", pytrace=False)


def ray_modules():
    """``ray``, ``ray.serve`` and ``Cluster``, imported with every Ray process bound to
    127.0.0.1 and without Ray's own deprecation warnings. Ray's own patience is stretched for
    a starved machine (the tests run beside builds on 2 CPUs): a worker process may take up
    to 5 minutes to register (Ray's default, 60 s, killed Serve's proxy actor once beside a
    release build) and a node may miss 20 health checks in a row (Ray's default: 5)."""
    import warnings

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_worker_register_timeout_seconds", "300")
    os.environ.setdefault("RAY_health_check_failure_threshold", "20")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import ray
        except ImportError as e:
            cannot_run("ray", f"Ray does not import ({e}); ./scripts/setup --tests installs it")
        from ray import serve
        from ray.cluster_utils import Cluster
    return ray, serve, Cluster


def add_node(cluster, **kwargs):
    """``cluster.add_node(**kwargs)``, tried up to four times when Ray's raylet misses the 30 s
    Ray gives it to register (fixed in ray/_private/node.py), or its GCS the port file: seen on
    a loaded 2-CPU machine, twice in a row in one of 20 runs beside a release build, before
    any corral code runs in the node."""
    for attempt in range(4):
        try:
            return cluster.add_node(**kwargs)
        except Exception as e:  # Ray raises a bare Exception (or RuntimeError) for these
            starved = "timed out during startup" in str(e) or "Timed out waiting for file" in str(e)
            if not starved or attempt == 3:
                raise


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(lock_dir, **env) -> dict:
    """This process's environment for a child, with its own lock folder and ``env`` on top."""
    merged = {k: v for k, v in os.environ.items() if k != "CORRAL_DEVICE"}
    merged["CORRAL_LOCK_DIR"] = str(lock_dir)
    merged.update({k: str(v) for k, v in env.items()})
    return merged


PRELUDE = """
import json, sys, time
import numpy as np
import corral
def report(**values):
    # One write of a whole line (atomic on a pipe), so a forked child's lines never mix in.
    sys.stdout.write(json.dumps(values) + "\\n")
    sys.stdout.flush()
def wait_until(condition, what, timeout=30):
    # A condition polled every 5 ms, never a bare sleep; fails the child after `timeout`.
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"gave up after {timeout} s waiting until {what}")
        time.sleep(0.005)
x = np.zeros((1, 16), np.float32)
"""


def program(code: str) -> str:
    return PRELUDE + textwrap.dedent(code)


def run_python(code: str, lock_dir, timeout: float = 60, **env) -> dict:
    """Runs ``code`` (after ``PRELUDE``) in a child Python; returns what it ``report``ed."""
    done = subprocess.run([sys.executable, "-c", program(code)], env=child_env(lock_dir, **env),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"child failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_python(code: str, lock_dir, **env) -> subprocess.Popen:
    """Starts ``code`` in a child Python with pipes on stdin, stdout and stderr; a thread
    queues its stdout lines for ``first_report``."""
    child = subprocess.Popen([sys.executable, "-c", program(code)], env=child_env(lock_dir, **env),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.lines = queue.Queue()

    def pump():
        for line in child.stdout:
            child.lines.put(line)
        child.lines.put(None)  # end of output

    threading.Thread(target=pump, daemon=True).start()
    return child


def first_report(child: subprocess.Popen, timeout: float = 60) -> dict:
    """The child's next ``report``, waiting at most ``timeout`` seconds."""
    try:
        line = child.lines.get(timeout=timeout)
    except queue.Empty:
        child.kill()
        raise AssertionError(f"child said nothing in {timeout} s:\n{child.stderr.read()}") from None
    assert line, f"child ended without a report:\n{child.stderr.read()}"
    return json.loads(line)


def finish(child: subprocess.Popen, timeout: float = 30) -> int:
    """Closes the child's stdin (which the test programs wait on) and waits for it to end."""
    child.stdin.close()
    return child.wait(timeout=timeout)


@pytest.fixture
def repo(tmp_path):
    """A folder for simulated models."""
    return tmp_path / "models"
