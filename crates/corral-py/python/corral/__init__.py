"""corral: exclusive cores and Neuron-style model placement for inference.

torch-neuronx's placement API and MXNet's contexts over corral's runtime, on real CPU cores
(``cpu``) and simulated Neuron machines (``sim:inf1.6xlarge``, ...)::

    import corral

    with corral.neuron_cores_context(start_nc=0, nc_count=2):
        m1 = corral.load("model.onnx")        # replicas on nc0 and nc1
    m1(x)                                      # runs on nc0, then nc1, nc0, ...

The process takes its cores once, at ``corral.init()`` or its first load, from
``CORRAL_DEVICE`` and ``CORRAL_NUM_CORES``/``NEURON_RT_NUM_CORES``,
``CORRAL_VISIBLE_CORES``/``NEURON_RT_VISIBLE_CORES`` or ``NEURONCORE_GROUP_SIZES``, and holds
them until it ends. Core indices in every call are process-relative, as in Neuron.
Contexts are scoped per thread and per asyncio task (``contextvars``), unlike Neuron's.
The runtime's records (INFO and above: warnings, the autopilot's moves) go to the ``logging``
logger ``corral``.
"""

from __future__ import annotations

import atexit
import contextvars
import importlib.util
import logging
import os
import pathlib
import threading
import warnings
from typing import Any, Literal, Sequence

from . import _corral
from ._corral import Model
from ._data_parallel import DataParallel
from ._errors import (
    ConfigError,
    CoresBusyError,
    CorralError,
    EngineError,
    ExecTimeoutError,
    ForkError,
    InferenceError,
    ModelLoadError,
    ModelUnloadedError,
    PlacementError,
    QueueFullError,
)

__all__ = [
    "ConfigError",
    "CoresBusyError",
    "CorralError",
    "DataParallel",
    "EngineError",
    "ExecTimeoutError",
    "ForkError",
    "InferenceError",
    "Model",
    "ModelLoadError",
    "ModelUnloadedError",
    "PlacementContext",
    "PlacementError",
    "QueueFullError",
    "cores",
    "device",
    "init",
    "load",
    "multicore_context",
    "neuron",
    "neuron_cores_context",
    "set_multicore",
    "set_neuron_cores",
]

# The innermost placement of this thread or task: ("cores", start, count),
# ("multicore", -1, -1) or ("neuron", i, -1); None for the default (least-used cores).
_placement: contextvars.ContextVar[tuple[str, int, int] | None] = contextvars.ContextVar(
    "corral_placement", default=None
)


def _setting(value: object) -> str | None:
    """An init argument as the runtime parses it: ints and lists become ``"4"``, ``"0,1,2"``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, range)):
        return ",".join(str(v) for v in value)
    return str(value)


def _ort_library() -> str | None:
    """ONNX Runtime's library from the ``onnxruntime`` package of *this* interpreter, found
    without importing it (``ORT_DYLIB_PATH``, when set, still wins)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    capi = pathlib.Path(list(spec.submodule_search_locations)[0]) / "capi"
    libraries = sorted(capi.glob("libonnxruntime.so*"))
    return str(libraries[-1]) if libraries else None


_log_reader: threading.Thread | None = None
_log_reader_lock = threading.Lock()


def _read_logs() -> None:
    """Hands the runtime's records (INFO and above: autopilot moves, warnings) to the
    ``logging`` logger ``corral``, until ``_stop_logs``."""
    logger = logging.getLogger("corral")
    while (records := _corral.next_logs(1.0)) is not None:
        for level, target, message in records:
            logger.log(level, message, extra={"corral_target": target})


def _start_logs() -> None:
    global _log_reader
    with _log_reader_lock:
        if _log_reader is None:
            _log_reader = threading.Thread(target=_read_logs, name="corral-logs", daemon=True)
            _log_reader.start()


def _forget_log_reader() -> None:
    """In a forked child: the parent's reader thread is not there; a start makes a new one."""
    global _log_reader, _log_reader_lock
    _log_reader, _log_reader_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_log_reader)


def _stop_logs() -> None:
    """At exit, after the models' unloads: the last records, then the reader ends (so no
    thread is inside the extension while the interpreter finalizes)."""
    _corral.stop_logs()
    if _log_reader is not None:
        _log_reader.join(timeout=5)


def _start(
    device: str | None = None,
    num_cores: int | str | None = None,
    visible_cores: int | str | Sequence[int] | None = None,
    group_sizes: str | Sequence[int] | None = None,
    *,
    explicit: bool,
) -> None:
    _start_logs()
    notice = _corral.init(
        _setting(device),
        _setting(num_cores),
        _setting(visible_cores),
        _setting(group_sizes),
        ort_library=_ort_library(),
        explicit=explicit,
    )
    if notice:
        warnings.warn(notice, RuntimeWarning, stacklevel=3)


def init(
    device: str | None = None,
    num_cores: int | str | None = None,
    visible_cores: int | str | Sequence[int] | None = None,
    group_sizes: str | Sequence[int] | None = None,
) -> None:
    """Takes this process's cores now. Arguments override the environment (an explicit core
    request replaces both environment core requests); ``None`` leaves a setting to it.
    Raises ``ConfigError`` if corral already started here with other settings, and
    ``CoresBusyError`` naming the holder when the cores are taken."""
    _start(device, num_cores, visible_cores, group_sizes, explicit=True)


def load(path: str | os.PathLike[str], *, name: str | None = None, ctx: PlacementContext | None = None,
         elastic: bool | None = None, autopilot: tuple[int, int] | None = None,
         engine: str | None = None) -> Model:
    """Loads a model: an ``.onnx`` file, OpenVINO IR (``model.xml`` beside its ``.bin``), or
    a model folder with ``config.toml`` or ``config.pbtxt`` (as ``corral serve`` reads them;
    simulated models too). ``engine`` (default: the folder's, else the process's,
    ``CORRAL_ONNX_ENGINE``): ``"onnxruntime"``, ``"openvino"``, ``"tract"``, or ``"auto"``,
    whichever of ONNX Runtime and OpenVINO runs the model faster here, measured at its first
    instance.

    Placement: ``ctx`` if given, else the innermost active context of this thread or task,
    else the folder's configuration, else one instance on the least-used cores. ``elastic``
    (default: the folder's, else off): single-core replicas on adjacent cores may run a call
    that finds them all idle on all their cores at once. ``autopilot`` (default: the
    folder's, else 1 to as many instances as the process's cores hold): the fewest and most
    instances the autopilot keeps of this model, when it runs (``CORRAL_AUTOPILOT=1``)."""
    if not _corral.started():
        _start(explicit=False)
    placement = ctx._placement if ctx is not None else _placement.get()
    return _corral.load(os.fspath(path), name, placement, elastic, autopilot, engine)


class PlacementContext:
    """A placement for the loads inside its ``with`` block (this thread or task only).

    Made by ``neuron_cores_context``, ``multicore_context`` and ``neuron``; also accepted as
    ``load(path, ctx=...)``, like MXNet's ``bind(ctx=mx.neuron(i))``. Contexts nest; leaving
    one (also by an exception) restores the one around it."""

    def __init__(self, placement: tuple[str, int, int], text: str):
        self._placement = placement
        self._text = text
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> PlacementContext:
        self._tokens.append(_placement.set(self._placement))
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        _placement.reset(self._tokens.pop())
        return False

    def __repr__(self) -> str:
        return self._text


def neuron_cores_context(start_nc: int = -1, nc_count: int = -1) -> PlacementContext:
    """torch-neuronx's context: loads start at process core ``start_nc`` (-1: least used) and
    span ``nc_count`` cores (-1: one instance; ``c`` >= K: c // K replicas). Raises
    ``PlacementError`` for ``nc_count`` 0 or below -1; counts past the process's cores fail
    at load."""
    _corral.check_placement(int(start_nc), int(nc_count))
    return PlacementContext(
        ("cores", int(start_nc), int(nc_count)),
        f"neuron_cores_context(start_nc={start_nc}, nc_count={nc_count})",
    )


def multicore_context() -> PlacementContext:
    """torch-neuronx's context: loads are replicated over every process core (n // K)."""
    return PlacementContext(("multicore", -1, -1), "multicore_context()")


def neuron(i: int) -> PlacementContext:
    """MXNet's ``mx.neuron(i)``: a FlexEG start core ``i``; with ``NEURONCORE_GROUP_SIZES``
    set, legacy group ``i`` instead (the model loads onto that group's first K cores)."""
    if int(i) < 0:
        raise PlacementError(f"neuron({i}) is not valid: use a core or group index, 0 or more")
    return PlacementContext(("neuron", int(i), -1), f"neuron({i})")


def set_neuron_cores(model: Model, start_nc: int = -1, nc_count: int = -1) -> None:
    """torch-neuronx's ``set_neuron_cores``: moves a loaded model to ``(start_nc, nc_count)``.
    Calls keep being answered by the old placement until the new one is ready."""
    _corral.check_placement(int(start_nc), int(nc_count))
    model._move(("cores", int(start_nc), int(nc_count)))


def set_multicore(model: Model) -> None:
    """torch-neuronx's ``set_multicore``: replicates a loaded model over every process core."""
    model._move(("multicore", -1, -1))


def cores() -> list[dict[str, Any]]:
    """Per process core: ``index``, ``global_index``, ``cpus``, ``executions``,
    ``busy_seconds``, ``switches`` and the ``models`` on it."""
    return _corral.cores()


def device() -> str:
    """The device this process took its cores on (``cpu``, ``sim:inf1.6xlarge``, ...)."""
    if not _corral.started():
        _start(explicit=False)
    return _corral.device()


# Run last to first: the models unload, then the log reader hands over their records and ends.
atexit.register(_stop_logs)
atexit.register(_corral.shutdown)
