"""Data parallelism for the shared loop: each process evaluates its share of every batch.

Under ``torch.distributed`` (launched by ``torchrun``; ``compute.ddp=true``) every process holds
the same model, data and seeded batch order. :func:`shard` gives each rank a contiguous part of
each batch's index items (scan positions of a tilt, or positions of a series), weighted by its
fraction of the batch; :func:`all_reduce_gradients` sums the ranks' gradients and
:func:`all_reduce_sum` their losses, so every rank steps its optimisers with the gradient of
the whole batch and the parameters stay identical: the same updates as one process, up to
the order of the floating-point sums. Without an initialised process group these are no-ops.
A batch that is not an index (or a tuple ending in one) is evaluated by rank 0 alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from simulate.errors import ConfigError


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes results (rank 0, or no process group)."""
    return world()[0] == 0


def shard(pieces: list[tuple[Any, float]], index_of: Any) -> list[tuple[Any, float]]:
    """This rank's share of ``pieces`` (``(batch, weight)``, as :func:`reconstruct.loop.
    split_batch` makes them): each piece's index tensor (``index_of(piece) -> (index,
    rebuild)`` or None when the piece is not an index) is cut into ``world size`` contiguous
    parts, and the weights scaled by each part's fraction; summed over ranks the weights are
    those of the pieces."""
    rank, size = world()
    if size == 1:
        return pieces
    out = []
    for piece, weight in pieces:
        found = index_of(piece)
        if found is None:
            if rank == 0:
                out.append((piece, weight))
            continue
        index, rebuild = found
        n = max(int(index.shape[0]), 1)
        part = torch.tensor_split(index, size)[rank]
        if part.numel():
            out.append((rebuild(part), weight * part.shape[0] / n))
    return out


def all_reduce_sum(value: float, device: torch.device | None = None) -> float:
    """``value`` summed over the ranks (float64)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0])


def all_reduce_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum ``.grad`` of every parameter that requires one over the ranks (a rank whose share
    left a gradient unset contributes zeros); complex gradients as their real views."""
    if world()[1] == 1:
        return
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        g: Tensor = torch.view_as_real(p.grad) if p.grad.is_complex() else p.grad
        dist.all_reduce(g)


def _backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(enabled: bool, device: str) -> Iterator[str]:
    """With ``enabled``, join the ``torchrun`` process group (``gloo`` on the CPU, ``nccl`` on
    CUDA, one GPU per local rank) for the duration; yields the device to compute on. Refuses,
    by key, a run that ``torchrun`` did not launch."""
    if not enabled:
        yield device
        return
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise ConfigError("compute.ddp", True, "false, or a launch by torchrun (it sets RANK "
                          "and WORLD_SIZE): torchrun --nproc-per-node N -m experiments.cli ...")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(_backend(device.split(":")[0]))
    try:
        yield device
    finally:
        if owner:
            dist.destroy_process_group()
