"""corral: exclusive cores and Neuron-style model placement for inference.

torch-neuronx's placement API and MXNet's contexts over corral's runtime. Core indices are
process-relative, as in Neuron: in a process given ``NEURON_RT_VISIBLE_CORES=4-5``, global
nc4 is core 0.
"""

from os import PathLike
from typing import Any, Literal, Sequence, overload

import numpy as np
import numpy.typing as npt

__all__: list[str]

class CorralError(Exception):
    """The root of every error corral raises."""

class ConfigError(CorralError, ValueError):
    """A malformed setting (``CORRAL_*``/``NEURON_RT_*`` values, ``init`` arguments)."""

class CoresBusyError(CorralError, RuntimeError):
    """The cores asked for are held by another process; the message names its pid and command."""

class PlacementError(CorralError, ValueError):
    """A placement that cannot be met (``nc_count`` 0 or past the process's cores, a bad start)."""

class ModelLoadError(CorralError, RuntimeError):
    """A model that cannot be loaded; the message names the path and the reason."""

class InferenceError(CorralError, ValueError):
    """Wrong inputs; the message names the input, what was expected and what came."""

class ExecTimeoutError(CorralError, TimeoutError):
    """A call that could not start within ``CORRAL_EXEC_TIMEOUT`` seconds (default 30)."""

class QueueFullError(CorralError, RuntimeError):
    """An async call refused at once because its replica's queue was full."""

class EngineError(CorralError, RuntimeError):
    """The engine failed while running a call."""

class ModelUnloadedError(CorralError, RuntimeError):
    """A call to a model that was unloaded."""

class ForkError(CorralError, RuntimeError):
    """A forked child used its parent's runtime: load after the fork, or use ``corral launch``."""

ArrayLike = npt.ArrayLike
TensorSpec = tuple[str, str, tuple[int | None, ...]]

class Model:
    """A model loaded on this process's cores; any number of threads may call it at once.

    Inputs are numpy arrays of the model's dtype (other layouts are converted once; anything
    with ``__array__`` works, such as a CPU ``torch.Tensor``; plain lists take the model's
    dtype), given by position, by name, or as one dict. Calls release the GIL."""

    @property
    def name(self) -> str:
        """Unique in the process: a second load of one file is ``name#2``."""
    @property
    def path(self) -> str | None:
        """The model file (``None`` for a simulated model)."""
    @property
    def cores_per_instance(self) -> int:
        """K: the consecutive process cores each instance spans."""
    @property
    def instances(self) -> list[tuple[int, ...]]:
        """Each instance's process cores, in replica order: ``[(0,), (1,)]``."""
    @property
    def inputs(self) -> list[TensorSpec]:
        """``(name, dtype, shape)`` per input; ``None`` marks a dimension of any size."""
    @property
    def outputs(self) -> list[TensorSpec]:
        """``(name, dtype, shape)`` per output."""
    @overload
    def __call__(self, inputs: dict[str, ArrayLike], /) -> np.ndarray | dict[str, np.ndarray]: ...
    @overload
    def __call__(self, *inputs: ArrayLike, **named: ArrayLike) -> np.ndarray | dict[str, np.ndarray]: ...
    def __call__(self, *inputs: Any, **named: ArrayLike) -> np.ndarray | dict[str, np.ndarray]:
        """Runs one inference: one array for a one-output model, else a dict name -> array.
        Ctrl-C raises ``KeyboardInterrupt`` promptly."""
    def infer(self, *inputs: Any, **named: ArrayLike) -> dict[str, np.ndarray]:
        """Runs one inference and returns every output by name."""
    async def infer_async(self, *inputs: Any, **named: ArrayLike) -> dict[str, np.ndarray]:
        """``infer`` for asyncio: no thread waits for the answer. Call inside a running loop."""
    def stats(self) -> dict[str, Any]:
        """``requests``, ``failures``, ``executions``, ``p50_ms``, ``p90_ms``, ``p99_ms``,
        ``queue_ms``, ``compute_ms`` and
        ``instances: [{"cores": [...], "executions": n, "in_flight": calls queued or running}]``."""
    def unload(self) -> None:
        """Unloads the model; accepted calls complete first. Dropping the last reference, or
        interpreter exit, does the same."""

class PlacementContext:
    """A placement for the loads in its ``with`` block, for this thread or asyncio task only;
    also accepted as ``load(path, ctx=...)``. Contexts nest and restore the outer one."""

    def __enter__(self) -> PlacementContext: ...
    def __exit__(self, *exc_info: object) -> Literal[False]: ...

class DataParallel:
    """torch-neuronx's ``DataParallel`` over corral replicas: replicates ``model`` on
    ``device_ids`` (ints or ``"nc:N"``; default every start position of the process's cores),
    splits a batch along ``dim`` across them, runs the pieces in parallel and concatenates them
    in order."""

    module: Model
    device_ids: list[int]
    dim: int
    dynamic_batching: bool
    num_workers: int
    """Threads that run chunks (default: one per replica)."""
    split_size: int | None
    """The chunk size (default: the batch divided evenly over the replicas)."""
    replicas: list[Model]

    def __init__(
        self,
        model: Model,
        device_ids: Sequence[int | str] | None = None,
        dim: int = 0,
        set_dynamic_batching: bool = True,
    ) -> None: ...
    def disable_dynamic_batching(self) -> None:
        """Each chunk must then equal the model's batch size, else ``ValueError``."""
    def __call__(self, *inputs: ArrayLike) -> np.ndarray | dict[str, np.ndarray]: ...
    def forward(self, *inputs: ArrayLike) -> np.ndarray | dict[str, np.ndarray]: ...

def init(
    device: str | None = None,
    num_cores: int | str | None = None,
    visible_cores: int | str | Sequence[int] | None = None,
    group_sizes: str | Sequence[int] | None = None,
) -> None:
    """Takes this process's cores now; arguments override ``CORRAL_DEVICE``,
    ``CORRAL_NUM_CORES``/``NEURON_RT_NUM_CORES``, ``CORRAL_VISIBLE_CORES``/
    ``NEURON_RT_VISIBLE_CORES`` and ``NEURONCORE_GROUP_SIZES``. Raises ``ConfigError`` if corral
    already started here with other settings, ``CoresBusyError`` when the cores are taken."""

def load(path: str | PathLike[str], *, name: str | None = None, ctx: PlacementContext | None = None,
         elastic: bool | None = None, autopilot: tuple[int, int] | None = None) -> Model:
    """Loads an ``.onnx`` file, or a model folder with ``config.toml`` or ``config.pbtxt``.
    Placement: ``ctx``, else the innermost active context, else the folder's configuration,
    else one instance on the least-used cores. The first load starts the runtime from the
    environment. ``elastic``: single-core replicas on adjacent cores may run a call that finds
    them all idle on all their cores at once (default: the folder's setting, else off).
    ``autopilot``: the fewest and most instances the autopilot keeps of this model when it
    runs (``CORRAL_AUTOPILOT=1``; default: the folder's, else 1 to what the cores hold)."""

def neuron_cores_context(start_nc: int = -1, nc_count: int = -1) -> PlacementContext:
    """Loads start at ``start_nc`` (-1: least used) over ``nc_count`` cores (-1: one instance;
    c >= K: c // K replicas). ``PlacementError`` for ``nc_count`` 0 or below -1."""

def multicore_context() -> PlacementContext:
    """Loads are replicated over every process core (n // K instances)."""

def neuron(i: int) -> PlacementContext:
    """MXNet's ``mx.neuron(i)``: start core ``i``, or group ``i`` with ``NEURONCORE_GROUP_SIZES``."""

def set_neuron_cores(model: Model, start_nc: int = -1, nc_count: int = -1) -> None:
    """Moves a loaded model; the old placement answers calls until the new one is ready."""

def set_multicore(model: Model) -> None:
    """Replicates a loaded model over every process core."""

def cores() -> list[dict[str, Any]]:
    """Per process core: ``index``, ``global_index``, ``cpus``, ``executions``,
    ``busy_seconds``, ``switches``, ``models``."""

def device() -> str:
    """The device this process took its cores on (``cpu``, ``sim:inf1.6xlarge``, ...)."""
