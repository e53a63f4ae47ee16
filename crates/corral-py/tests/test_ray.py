"""corral on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): each node
declares ``corral.ray.node_resources("sim:4")`` and has its own ``CORRAL_DEVICE`` and
``CORRAL_LOCK_DIR``, so the two behave as two hosts. A Ray Serve deployment of a simulated
2-core model runs 4 replicas x 2 cores; the tests check each replica's lease against the cores
Ray assigned it and against each node's registry (``corral ls``), spread of calls, and what
a SIGKILLed replica leaves behind. Ray's processes are stopped at the end whatever happens.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import add_node, corral_ls, free_port, ray_modules, sim_model

ray, serve, Cluster = ray_modules()
import corral.ray  # noqa: E402

REPLICAS = 4
WAIT_S = 120  # bound on anything Ray does (start, deploy, replace a replica)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes, each a simulated 4-core host with its own registry, and the
    deployment; yields (handle, lock folders, HTTP port)."""
    base = tmp_path_factory.mktemp("ray")
    locks = [base / f"node{i}-locks" for i in range(2)]
    model = sim_model(base / "models", "wide", cores=2, latency_ms=5)
    nodes = Cluster()
    try:
        for lock in locks:
            add_node(nodes, num_cpus=2, resources=corral.ray.node_resources("sim:4"), include_dashboard=False,
                     env_vars={"CORRAL_DEVICE": "sim:4", "CORRAL_LOCK_DIR": str(lock)})
        ray.init(address=nodes.address, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = corral.ray.deployment(model, cores_per_replica=2, num_replicas=REPLICAS)
        handle = serve.run(app, name="wide", route_prefix="/wide")
        yield handle, locks, port
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            nodes.shutdown()


def replicas(handle, exclude=()) -> dict:
    """``corral_info()`` of every live replica, by pid (asking until all 4 answered)."""
    seen = {}
    deadline = time.monotonic() + WAIT_S
    while len(seen) < REPLICAS:
        assert time.monotonic() < deadline, f"only {len(seen)} replicas answered: {list(seen)}"
        info = handle.corral_info.remote().result(timeout_s=WAIT_S)
        if info["pid"] not in exclude:
            seen[info["pid"]] = info
    return seen


def held(lock_dir) -> dict:
    """Core index -> owner pid on one node."""
    listing = corral_ls(lock_dir, "sim:4")
    return {core["index"]: core["owner"]["pid"] for core in listing["cores"] if core["owner"]}


def check_leases(handle, locks, exclude=()) -> dict:
    """Every replica's lease is what Ray assigned it and what its node's registry says; no
    core is owned twice on either node."""
    infos = replicas(handle, exclude)
    owners = [held(lock) for lock in locks]
    for pid, info in infos.items():
        assigned = [int(i) for i in info["visible_cores"].split(",")]
        assert info["cores"] == assigned, info
        nodes = [n for n, cores in enumerate(owners) if pid in cores.values()]
        assert len(nodes) == 1, f"replica {pid} holds cores on nodes {nodes}"
        assert sorted(c for c, p in owners[nodes[0]].items() if p == pid) == assigned
    for node, cores in enumerate(owners):
        assert set(cores.values()) <= set(infos), f"node {node}: cores held by non-replicas: {cores}"
    return infos


def test_each_replica_owns_exactly_the_cores_ray_assigned_and_calls_spread(cluster):
    handle, locks, port = cluster
    infos = check_leases(handle, locks)
    assert sum(len(held(lock)) for lock in locks) == 2 * REPLICAS, "8 cores: 4 per node, each once"
    before = sum(info["stats"]["requests"] for info in infos.values())

    x = np.arange(16, dtype=np.float32).reshape(1, 16)
    answers = [handle.remote(x) for _ in range(100)]
    outputs = [answer.result(timeout_s=WAIT_S) for answer in answers]
    assert all(out.shape == (1, 4) and out.dtype == np.float32 for out in outputs)

    after = replicas(handle)
    served = {pid: info["stats"]["requests"] - infos[pid]["stats"]["requests"] for pid, info in after.items()}
    assert sum(served.values()) == 100, served
    assert all(n > 0 for n in served.values()), f"a replica got no call: {served}"
    assert before + 100 == sum(info["stats"]["requests"] for info in after.values())

    # KServe v2 JSON over Ray Serve's HTTP proxy.
    import json
    import urllib.request

    body = {"id": "7", "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": list(range(16))}]}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/wide", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=WAIT_S).read())
    assert answer["id"] == "7" and answer["model_name"] == "wide"
    assert answer["outputs"][0]["name"] == "y" and answer["outputs"][0]["shape"] == [1, 4]
    bad = urllib.request.Request(f"http://127.0.0.1:{port}/wide", data=b'{"inputs": 3}')
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=WAIT_S)
    assert refused.value.code == 400 and b"inputs" in refused.value.read()


def test_a_sigkilled_replica_frees_its_cores_and_is_replaced(cluster):
    handle, locks, _ = cluster
    infos = replicas(handle)
    victim = next(iter(infos))
    node = next(n for n, lock in enumerate(locks) if victim in held(lock).values())

    results = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def caller():
        x = np.zeros((1, 16), np.float32)
        while not stop.is_set():
            try:
                handle.remote(x).result(timeout_s=WAIT_S)
                results["ok"] += 1
            except Exception:  # a call in flight on the killed replica
                results["failed"] += 1

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for t in callers:
        t.start()
    try:
        os.kill(victim, signal.SIGKILL)
        # The kernel released its cores with the process: no clean-up step to wait for.
        deadline = time.monotonic() + 5
        while victim in held(locks[node]).values():
            assert time.monotonic() < deadline, "the killed replica's cores are still held"
            time.sleep(0.05)
        ok_at_kill = results["ok"]
        # Ray starts a replacement, which takes cores on a node again.
        after = check_leases(handle, locks, exclude={victim})
        assert victim not in after
        assert sum(len(held(lock)) for lock in locks) == 2 * REPLICAS
        deadline = time.monotonic() + WAIT_S
        while results["ok"] < ok_at_kill + 50:
            assert time.monotonic() < deadline, f"calls stopped being answered: {results}"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in callers:
            t.join(timeout=WAIT_S)
    assert results["failed"] <= len(callers), f"only calls in flight on the killed replica may fail: {results}"
