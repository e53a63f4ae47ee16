"""corral on Ray with real cores: one Ray node on the ``cpu`` device, declaring
``corral.ray.node_resources()`` (this machine's cores), serves squeezenet with 2 replicas x 1
core. Each replica's process must be pinned to its own CPU (``/proc/PID/status``) and answer
what onnxruntime answers.
"""

import numpy as np

from conftest import SQUEEZENET, add_node, cannot_run, corral_ls, free_port, ray_modules

ray, serve, Cluster = ray_modules()
import corral.ray  # noqa: E402

WAIT_S = 120


def allowed_cpus(pid: int) -> str:
    with open(f"/proc/{pid}/status") as status:
        line = next(l for l in status if l.startswith("Cpus_allowed_list:"))
    return line.split()[-1]


def test_replicas_on_real_cores_are_pinned_apart_and_match_onnxruntime(tmp_path):
    cores = corral.ray.node_resources("cpu")["neuron_cores"]
    if cores < 2:
        cannot_run("two-cores", f"this machine has {cores} cpu core(s); the test needs 2")
    lock = tmp_path / "locks"
    node = Cluster()
    try:
        add_node(node, num_cpus=2, resources=corral.ray.node_resources("cpu"), include_dashboard=False,
                      env_vars={"CORRAL_DEVICE": "cpu", "CORRAL_LOCK_DIR": str(lock)})
        ray.init(address=node.address, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        handle = serve.run(corral.ray.deployment(SQUEEZENET, num_replicas=2), name="squeezenet", route_prefix="/sq")

        infos = {}
        while len(infos) < 2:
            info = handle.corral_info.remote().result(timeout_s=WAIT_S)
            infos[info["pid"]] = info
        pinned = {pid: allowed_cpus(pid) for pid in infos}
        for pid, info in infos.items():
            assert info["device"] == "cpu"
            assert info["cores"] == [int(info["visible_cores"])], info
            assert pinned[pid] == ",".join(map(str, info["cpus"])), (pid, pinned[pid], info)
        assert len(set(pinned.values())) == 2, f"replicas share a CPU: {pinned}"
        listing = corral_ls(lock, "cpu")
        owners = {core["index"]: core["owner"]["pid"] for core in listing["cores"] if core["owner"]}
        assert owners == {info["cores"][0]: pid for pid, info in infos.items()}

        import onnxruntime

        session = onnxruntime.InferenceSession(str(SQUEEZENET), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(7).random((1, 3, 224, 224), dtype=np.float32)
        expected = session.run(None, {session.get_inputs()[0].name: x})[0]
        answers = [handle.remote(x) for _ in range(8)]
        for answer in answers:
            np.testing.assert_allclose(answer.result(timeout_s=WAIT_S), expected, rtol=1e-4, atol=1e-6)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            node.shutdown()
