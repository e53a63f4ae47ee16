"""The native half of the package (``corral._corral``, built from ``crates/corral-py``):
the ``Model`` class and the functions ``corral/__init__.py`` wraps. The pure-Python names
carry their own annotations; this stub covers only what Python cannot see."""

from typing import Any, overload

import numpy as np
import numpy.typing as npt

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
    def _move(self, placement: tuple[str, int, int]) -> None: ...
    def _copy(self, placement: tuple[str, int, int]) -> Model: ...

def init(
    device: str | None = None,
    num_cores: str | None = None,
    visible_cores: str | None = None,
    group_sizes: str | None = None,
    *,
    ort_library: str | None = None,
    explicit: bool = True,
) -> str | None: ...
def started() -> bool: ...
def device() -> str: ...
def cores() -> list[dict[str, Any]]: ...
def device_cores(device: str | None = None) -> int: ...
def check_placement(start_nc: int, nc_count: int) -> None: ...
def shutdown() -> None: ...
def load(
    path: str,
    name: str | None,
    placement: tuple[str, int, int] | None,
    elastic: bool | None,
    autopilot: tuple[int, int] | None,
    engine: str | None,
) -> Model: ...
def next_logs(timeout: float) -> list[tuple[int, str, str]] | None: ...
def stop_logs() -> None: ...
