"""corral on Ray: Ray schedules, corral owns the cores on each node.

Ray (2.60) treats ``neuron_cores`` as a per-core accelerator resource once a node declares it,
and hands every task and actor that asks for some their core IDs in
``NEURON_RT_VISIBLE_CORES``. corral reads that variable like any other: the replica process
takes exactly those cores (exclusively, in the node's registry), numbers them 0.. in
ascending order even when Ray's IDs are not consecutive (``"1,3"`` after fragmentation), and
pins its work to them. Nothing of Ray is forked or patched; a node's device and lock folder
come from its environment (``CORRAL_DEVICE``, ``CORRAL_LOCK_DIR``).

- :func:`node_resources` (or ``corral ray-resources``): what a node should declare, so that
  Ray hands out exactly the cores corral will own.
- :func:`deployment`: a Ray Serve application whose replicas each load one model on their
  whole lease, answering numpy arrays through a ``DeploymentHandle`` and KServe v2 JSON
  (``{"inputs": [...]}``) over Ray Serve's HTTP proxy.

Ray is an optional dependency (``pip install 'corral[ray]'``); this module imports without
it, and only :func:`deployment` needs it.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from . import _corral
from ._errors import ConfigError

#: The Ray resource a node declares and a replica asks for (Ray's Neuron accelerator).
RESOURCE = "neuron_cores"

# KServe v2 datatypes and numpy's.
_DTYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_DATATYPES = {np.dtype(v): k for k, v in _DTYPES.items()}


def node_resources(device: str | None = None) -> dict[str, int]:
    """``{"neuron_cores": N}``, N the cores of ``device`` (else ``CORRAL_DEVICE``, else
    ``cpu``) on this host, for ``ray.init(resources=...)`` or ``ray start --resources``.
    Takes no core. Raises ``ConfigError`` for an unknown device."""
    return {RESOURCE: _corral.device_cores(None if device is None else str(device))}


def deployment(
    path: str | os.PathLike,
    *,
    cores_per_replica: int = 1,
    num_replicas: int = 1,
    name: str | None = None,
    **serve_options: Any,
):
    """A Ray Serve application serving the model at ``path`` (an ``.onnx`` file or a model
    folder, readable at that path on every node).

    Each of ``num_replicas`` replicas asks Ray for ``cores_per_replica`` ``neuron_cores``,
    loads the model on exactly the cores Ray gave it (its whole lease: with more cores than
    the model's K, one instance per K cores) and pins the replica process to their CPUs on
    the ``cpu`` device. ``serve_options`` go to ``serve.deployment`` (``ray_actor_options``
    is merged: the replica asks for 0 CPUs by default, since its work runs on its cores).

    Run it with ``serve.run(corral.ray.deployment(...))``; the handle takes numpy arrays like
    ``Model.__call__`` and answers the same way, and HTTP takes KServe v2 JSON.
    """
    try:
        from ray import serve
    except ImportError as error:
        raise ImportError(
            "corral.ray.deployment needs Ray Serve\nhint: pip install 'corral[ray]' (ray[serve] 2.60)"
        ) from error
    cores = int(cores_per_replica)
    if cores < 1:
        raise ConfigError(f"cores_per_replica={cores_per_replica!r} is not valid: a replica needs at least 1 core")
    model_path = str(pathlib.Path(path).absolute())
    model_name = name or _default_name(model_path)
    actor_options = dict(serve_options.pop("ray_actor_options", None) or {})
    actor_options["resources"] = {**(actor_options.get("resources") or {}), RESOURCE: cores}
    actor_options.setdefault("num_cpus", 0)
    replica = serve.deployment(
        CorralReplica,
        name=model_name,
        num_replicas=num_replicas,
        ray_actor_options=actor_options,
        **serve_options,
    )
    return replica.bind(model_path, model_name)


def _default_name(path: str) -> str:
    p = pathlib.Path(path)
    return p.stem if p.suffix == ".onnx" else p.name


class CorralReplica:
    """One Ray Serve replica: a corral runtime on the cores Ray assigned this actor."""

    def __init__(self, path: str, name: str):
        import corral

        self._name = name
        # Every core of the lease: one instance per K cores (a multicore model).
        self.model = corral.load(path, name=name, ctx=corral.multicore_context())
        self._cpus = sorted({cpu for core in corral.cores() for cpu in core["cpus"]})
        _pin_process(self._cpus)

    async def __call__(self, *inputs: Any, **named: Any):
        if len(inputs) == 1 and not named and _is_http_request(inputs[0]):
            return await self._kserve(inputs[0])
        outputs = await self.model.infer_async(*inputs, **named)
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def corral_info(self) -> dict[str, Any]:
        """Where this replica runs: its pid, Ray's core IDs, corral's cores and the model's stats."""
        import corral
        import ray

        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "visible_cores": os.environ.get("NEURON_RT_VISIBLE_CORES"),
            "device": corral.device(),
            "cores": [core["global_index"] for core in corral.cores()],
            "cpus": self._cpus,
            "stats": self.model.stats(),
        }

    async def _kserve(self, request):
        from starlette.responses import JSONResponse

        try:
            body = await request.json()
            arrays = _decode(body)
        except (ValueError, TypeError, KeyError) as error:
            return JSONResponse({"error": f"not a KServe v2 inference request: {error}"}, status_code=400)
        try:
            outputs = await self.model.infer_async(**arrays)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        answer = {"model_name": self._name, "outputs": [_encode(n, a) for n, a in outputs.items()]}
        if isinstance(body, dict) and "id" in body:
            answer["id"] = body["id"]
        return JSONResponse(answer)


def _is_http_request(value: Any) -> bool:
    try:
        from starlette.requests import Request
    except ImportError:
        return False
    return isinstance(value, Request)


def _decode(body: Any) -> dict[str, np.ndarray]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ValueError('the body must be a JSON object with an "inputs" list')
    arrays = {}
    for tensor in body["inputs"]:
        datatype = tensor["datatype"]
        if datatype not in _DTYPES:
            raise ValueError(f"datatype {datatype!r} of input {tensor['name']!r} is not one of {sorted(_DTYPES)}")
        arrays[str(tensor["name"])] = np.asarray(tensor["data"], dtype=_DTYPES[datatype]).reshape(tensor["shape"])
    return arrays


def _encode(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": _DATATYPES.get(array.dtype, str(array.dtype)),
        "data": array.ravel().tolist(),
    }


def _pin_process(cpus: list[int]) -> None:
    """Pins every thread of this process (Ray's own included) to ``cpus``; threads started
    later inherit it. Nothing to do on a simulated device."""
    if not cpus:
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # a thread that ended meanwhile
