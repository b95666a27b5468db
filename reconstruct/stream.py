"""Diffraction patterns larger than memory (``compute.max_memory_gb``): staged once, read per batch.

:func:`stage_patterns` draws the noisy measurements block by block (runs of a tilt's scan rows,
with the one generator of :func:`simulate.noise.dose_sampler` that ``Dataset.measurements``
uses for the whole array: bitwise the same counts), divides them by the electrons per
position, crops them to the grid and writes them, float32, into a scratch zarr store.
:class:`ZarrPatterns` stands in for the ``[T, P, n1, n2]`` patterns of
:class:`reconstruct.data.TomoData`: ``[t]``, ``[t, indices]``, ``[t, a:b]`` and ``[t, p]`` read
only the chunks they need and return what the in-memory tensor holds there; every other use
is refused by name.

Memory: a staging block's float64 copy is ``max_memory_gb / 16``; zarr decompresses whole
stored chunks (<= 16 MB, several at once in its threads). The scratch store lies beside the
dataset's cache entry (else in the temporary directory) and is removed with the object or at
exit; one that a killed process of this host left is removed by the next staging.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import shutil
import socket
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch
import zarr
from torch import Tensor

from reconstruct.data import crop_patterns
from simulate.errors import ConfigError
from simulate.noise import dose_sampler

if TYPE_CHECKING:
    from simulate.config import NoiseConfig
    from simulate.store import Dataset

PREFIX = ".ptychobench-stream"
BLOCK_FRACTION = 16  # a staging block's float64 intensities take 1/16 of max_memory_gb
CHUNK_BYTES = 1 << 18  # scratch chunks of whole patterns, about 256 kB


class StreamedPatternsError(TypeError, AttributeError):
    """An operation that needs the streamed patterns in memory."""


def check_max_memory(value: Any) -> float | None:
    """``compute.max_memory_gb`` (GB = 1e9 bytes) as a float, or None; :class:`ConfigError`
    unless it is null or a number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigError("compute.max_memory_gb", value, "null or a number > 0")
    return float(value)


class ZarrPatterns:
    """The ``[T, P, n1, n2]`` float32 patterns (per incident electron) in a zarr array, read
    per index onto ``device``; ``owned``, a scratch directory, is removed with the object
    (so pickling, hence deep copies, are refused; ``dataclasses.replace`` shares it)."""

    def __init__(self, array: zarr.Array, device: torch.device | str,
                 max_memory_gb: float | None = None, owned: Path | None = None) -> None:
        self.array, self.max_memory_gb = array, max_memory_gb
        self.shape = torch.Size(int(s) for s in array.shape)
        self.dtype, self.device = torch.float32, torch.device(device)
        self._finalizer = (None if owned is None
                           else weakref.finalize(self, shutil.rmtree, str(owned), True))

    ndim = property(lambda self: len(self.shape))

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ZarrPatterns(shape={tuple(self.shape)}, store={self.array.store})"

    def __getitem__(self, key: Any) -> Tensor:
        """``[t]`` → ``[P, n1, n2]``; ``[t, p]`` → ``[n1, n2]``; ``[t, a:b]`` and ``[t,
        indices]`` (a 1-D integer tensor, array or list; repeats and any order) → ``[B, n1,
        n2]``. Negative integers count from the end, as for a tensor."""
        t, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if len(rest) > 1 or isinstance(t, slice | list) or getattr(t, "ndim", 0):
            self._refuse(f"indexing with {key!r}")
        t = _position(t, self.shape[0], "tilt")
        if not rest:
            out = self.array[t]
        elif isinstance(rest[0], slice):
            out = self.array[t, rest[0]]
        elif isinstance(rest[0], list) or getattr(rest[0], "ndim", 0):
            out = self._gather(t, rest[0])
        else:
            out = self.array[t, _position(rest[0], self.shape[1], "scan position")]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(self.device)

    def _gather(self, t: int, indices: Tensor | np.ndarray | list) -> np.ndarray:
        """The patterns ``[B, n1, n2]`` of tilt ``t`` at ``indices [B]``: each distinct one read
        once, in ascending order (orthogonal indexing), then put in the order asked."""
        idx = (indices.detach().cpu().numpy() if isinstance(indices, Tensor)
               else np.asarray(indices))
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            self._refuse(f"indexing with {idx.dtype} indices of shape {idx.shape}")
        p = self.shape[1]
        if idx.size and (idx.min() < -p or idx.max() >= p):
            raise IndexError(f"scan position index out of range for {p} positions")
        unique, inverse = np.unique(np.where(idx < 0, idx + p, idx), return_inverse=True)
        return self.array.oindex[t, unique][inverse.reshape(-1)]

    def _refuse(self, what: str) -> NoReturn:
        raise StreamedPatternsError(
            f"the diffraction patterns {tuple(self.shape)} are streamed from a scratch zarr "
            f"store because they exceed compute.max_memory_gb = {self.max_memory_gb}; {what} "
            f"needs them in memory (index them as patterns[t], patterns[t, indices], or raise "
            f"compute.max_memory_gb / set it to null)")

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):  # the protocols' lookups (copy, pickle, numpy, ...)
            raise AttributeError(name)
        self._refuse(f"the tensor attribute .{name}")

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        nested = (b for a in args if isinstance(a, list | tuple) for b in a)  # torch.stack([p])
        mine = [a for a in [*args, *(kwargs or {}).values(), *nested] if isinstance(a, cls)]
        if not mine:
            return NotImplemented
        mine[0]._refuse(f"torch.{getattr(func, '__name__', func)}")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        self._refuse("pickling (another process would outlive its scratch store)")

    def __array__(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("conversion to a numpy array")

    def __iter__(self) -> NoReturn:
        self._refuse("iteration")

    def _operator(self, *args: Any) -> NoReturn:
        self._refuse("arithmetic or comparison")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _operator
    __truediv__ = __rtruediv__ = __floordiv__ = __pow__ = __rpow__ = __matmul__ = _operator
    __rmatmul__ = __neg__ = __abs__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _operator


def _position(i: Any, n: int, what: str) -> int:
    """An integer index into ``n`` items as a non-negative int (IndexError out of range)."""
    i = operator.index(i)
    if not -n <= i < n:
        raise IndexError(f"{what} index {i} out of range for {n}")
    return i % n


def stream_bytes(ds: Dataset, n: tuple[int, int]) -> int:
    """Bytes of the cropped float32 patterns ``[T, P, n1, n2]`` of ``ds``."""
    t, sx, sy = ds.group["measurements/diffraction"].shape[:3]
    return 4 * t * sx * sy * n[0] * n[1]


def staging_plan(shape: tuple[int, ...], chunks: tuple[int, ...], max_memory_gb: float,
                 ) -> tuple[int, int]:
    """Scan rows ``(per read, per block)`` staging the raw ``[T, sx, sy, kx, ky]`` intensities,
    stored in ``chunks``: a block's float64 copy takes at most ``1 / BLOCK_FRACTION`` of
    ``max_memory_gb`` (at least one row); a read is a stored chunk's rows where they take at
    most a quarter of it (each chunk decompressed once), else one block."""
    sx, row, budget = shape[1], math.prod(shape[2:]), max_memory_gb * 1e9
    block = max(1, min(sx, int(budget / BLOCK_FRACTION) // (8 * row)))
    stored = int(chunks[1]) if chunks[0] == 1 else sx
    if block >= stored:
        block -= block % stored
        return block, block
    return (stored if 4 * stored * row <= budget / 4 else block), block


def scratch_root(ds: Dataset, scratch_dir: str | Path | None = None) -> Path:
    """A new scratch directory in ``scratch_dir``, by default beside the dataset's cache entry
    (or in the temporary directory if that is not writable). Scratch directories that a
    killed process of this host left there are removed first."""
    parents = [Path(scratch_dir)] if scratch_dir is not None else [
        ds.path.parent, Path(tempfile.gettempdir())]
    host = socket.gethostname()
    for parent in parents:
        if not os.access(parent, os.W_OK):
            continue
        for old in parent.glob(f"{PREFIX}-{host}-*"):
            pid = old.name[len(PREFIX) + len(host) + 2:].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{host}-{os.getpid()}-", dir=parent))
    raise OSError(f"no writable scratch directory among {[str(p) for p in parents]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        pass
    return True


def stage_patterns(ds: Dataset, noise: NoiseConfig, realisation: int, n: tuple[int, int],
                   device: torch.device | str, max_memory_gb: float,
                   scratch_dir: str | Path | None = None) -> ZarrPatterns:
    """The noisy, cropped patterns ``[T, P, n1, n2]`` per incident electron of ``ds``, written
    into a scratch store block by block (runs of a tilt's scan rows, :func:`staging_plan`, in
    C order), each equal bitwise to ``from_dataset``'s in-memory tensor there."""
    src = ds.group["measurements/diffraction"]  # [T, sx, sy, kx, ky]
    t, sx, sy, kx, ky = src.shape
    electrons = ds.electrons_per_position(noise)
    draw = dose_sampler(electrons, noise.seed + realisation)
    read, rows = staging_plan(src.shape, src.chunks, max_memory_gb)
    root = scratch_root(ds, scratch_dir)
    try:
        per_chunk = max(1, min(sx * sy, CHUNK_BYTES // (4 * n[0] * n[1])))
        out = zarr.create_array(store=str(root), shape=(t, sx * sy, *n), dtype="float32",
                                chunks=(1, per_chunk, *n), compressors=None, fill_value=0.0)
        for i in range(t):
            for r0 in range(0, sx, read):
                raw = src[i, r0:r0 + read]  # [read, sy, kx, ky]
                for r in range(0, len(raw), rows):
                    counts = draw(raw[r:r + rows])  # the next C-order block
                    if not math.isinf(electrons):  # as Dataset.measurements(per_electron=True)
                        counts = counts / electrons
                    a = (r0 + r) * sy
                    out[i, a:a + len(counts) * sy] = crop_patterns(counts.reshape(-1, kx, ky), n)
                del raw, counts
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return ZarrPatterns(out, device, max_memory_gb, owned=root)
