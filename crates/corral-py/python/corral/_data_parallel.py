"""``DataParallel``: torch-neuronx's data parallelism over corral replicas.

The model is loaded once more per device id (one instance starting at that process core);
a call splits its batch along ``dim`` into one chunk per replica, runs the chunks at once
(threads; each call releases the GIL), and concatenates the outputs in order.
"""

from __future__ import annotations

import concurrent.futures
import math
import warnings

import numpy as np

from ._errors import PlacementError


def _core_index(device_id) -> int:
    if isinstance(device_id, str):
        text = device_id.strip()
        if not text.startswith("nc:") or not text[3:].isdigit():
            raise PlacementError(f'device id {device_id!r} is not valid: use an int or "nc:N"')
        return int(text[3:])
    return int(device_id)


class DataParallel:
    """Replicates ``model`` on ``device_ids`` (ints or ``"nc:N"``, process-relative; default
    every start position of the process's cores) and splits each batch across them.

    ``set_dynamic_batching=True`` (torch-neuronx's default) lets a replica's chunk differ from
    the model's fixed batch size: chunks are cut (and the last one padded) to the size the
    model takes. With it disabled (``disable_dynamic_batching()``), each chunk must equal that
    size, else ``ValueError``. ``num_workers`` threads run chunks (default: one per replica);
    ``split_size`` sets the chunk size (default: the batch divided evenly over replicas)."""

    def __init__(self, model, device_ids=None, dim: int = 0, set_dynamic_batching: bool = True):
        from . import cores

        if device_ids is None:
            k = model.cores_per_instance
            device_ids = range(0, len(cores()) - k + 1, k)
        ids = [_core_index(d) for d in device_ids]
        if not ids:
            raise PlacementError("DataParallel needs at least one device id")
        self.module = model
        self.device_ids = ids
        self.dim = dim
        self.dynamic_batching = set_dynamic_batching
        self.num_workers = len(ids)
        self.split_size: int | None = None
        with warnings.catch_warnings():
            # The replicas share cores with `model` itself by design: no warning for that.
            warnings.simplefilter("ignore", UserWarning)
            self.replicas = [model._copy(("cores", i, -1)) for i in ids]
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_size = 0

    def disable_dynamic_batching(self) -> None:
        """Each replica's chunk must then equal the model's batch size exactly."""
        self.dynamic_batching = False

    def _model_batch(self) -> int | None:
        """The model's fixed size along ``dim`` (of its first input), or None if any size goes."""
        shape = self.module.inputs[0][2]
        return shape[self.dim] if self.dim < len(shape) else None

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None or self._pool_size != self.num_workers:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, self.num_workers), thread_name_prefix="corral-dp"
            )
            self._pool_size = self.num_workers
        return self._pool

    def _run_chunk(self, replica, pieces: list[list[np.ndarray]], sizes: list[int]):
        """Runs one replica's pieces in turn; trims padding; returns a list of output dicts."""
        out = []
        for arrays, size in zip(pieces, sizes):
            result = replica.infer(*arrays)
            out.append({k: np.take(v, range(size), axis=self.dim) for k, v in result.items()})
        return out

    def __call__(self, *inputs):
        arrays = [np.asarray(x) for x in inputs]
        batch = arrays[0].shape[self.dim]
        n = len(self.replicas)
        chunk = self.split_size or max(1, math.ceil(batch / n))
        bounds = [(s, min(s + chunk, batch)) for s in range(0, batch, chunk)]
        fixed = self._model_batch()
        jobs = []
        for index, (lo, hi) in enumerate(bounds):
            piece_size = hi - lo
            if fixed is None:
                steps = [(lo, hi)]
            elif self.dynamic_batching:
                steps = [(s, min(s + fixed, hi)) for s in range(lo, hi, fixed)]
            elif piece_size != fixed:
                raise ValueError(
                    f"DataParallel: a replica's batch is {piece_size} along dim {self.dim} but the model takes "
                    f"{fixed}\nhint: pass a batch of {fixed} x {n} replicas, set split_size = {fixed}, "
                    "or keep dynamic batching on"
                )
            else:
                steps = [(lo, hi)]
            pieces, sizes = [], []
            for s, e in steps:
                cut = [np.take(a, range(s, e), axis=self.dim) for a in arrays]
                if fixed is not None and e - s < fixed:
                    pad = [(0, 0)] * cut[0].ndim
                    pad[self.dim] = (0, fixed - (e - s))
                    cut = [np.pad(c, pad) for c in cut]
                pieces.append(cut)
                sizes.append(e - s)
            jobs.append((self.replicas[index % n], pieces, sizes))
        pool = self._executor()
        futures = [pool.submit(self._run_chunk, replica, pieces, sizes) for replica, pieces, sizes in jobs]
        parts = [part for future in futures for part in future.result()]
        names = list(parts[0])
        joined = {name: np.concatenate([p[name] for p in parts], axis=self.dim) for name in names}
        return joined[names[0]] if len(names) == 1 else joined

    forward = __call__

    def __repr__(self) -> str:
        return f"DataParallel({self.module!r}, device_ids={self.device_ids}, dim={self.dim})"
