"""The one optimisation loop shared by all reconstruction variants.

A variant supplies

* a ``model`` (``nn.Module``) with ``parameter_groups() -> {name: [Parameter, ...]}``, names
  from :data:`GROUP_NAMES` (any others are allowed too);
* ``batches``: a callable ``generator -> iterable of batches`` (one pass = one iteration; see
  :func:`index_batches` for mini-/full-batch index batches) or a fixed sequence of batches;
* ``loss_fn(model, batch) -> scalar``;
* per-group :class:`GroupSettings` (learning rate, optimiser, start/stop iteration);
* optional constraints ``fn(model, iteration)`` run under ``no_grad`` after every update
  (positivity, filters, probe orthogonalisation, ...).

Groups without settings stay frozen. A group with ``optimizer="lbfgs"`` (for a few
well-conditioned parameters: tilt, thickness) is stepped after the others with a closure that
re-evaluates the batch loss. The loop is seeded (``torch.manual_seed`` and the batch
generator) and deterministic on CPU; it records the loss per iteration and raises
:class:`DivergenceError` when the loss becomes NaN/inf or grows past ``divergence_factor``
times the first iteration's loss, or when an updated parameter becomes NaN/inf.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from reconstruct.distributed import all_reduce_gradients, all_reduce_sum, is_main, shard
from reconstruct.linesearch import BacktrackingGD
from simulate.progress import progress_bar

GROUP_NAMES = (
    "object", "probe", "positions", "tilt", "slice_thickness", "angles", "shifts", "atoms",
)  # fmt: skip

_CLOSURE = ("lbfgs", "line_search")  # optimisers that re-evaluate the loss through a closure
_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "lbfgs": torch.optim.LBFGS,
    "line_search": BacktrackingGD,
}


@dataclass
class GroupSettings:
    """Optimiser settings of one parameter group.

    ``lr`` in the group's own units per iteration (e.g. V Å, Å, rad); the group is updated for
    ``start_iter <= iteration < stop_iter``; after each of its active iterations the learning
    rate is multiplied by ``lr_decay``; ``options`` go to the optimiser (betas, momentum).
    """

    lr: float
    optimizer: str = "adam"
    start_iter: int = 0
    stop_iter: int | None = None
    lr_decay: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def active(self, iteration: int) -> bool:
        stop = math.inf if self.stop_iter is None else self.stop_iter
        return self.start_iter <= iteration < stop


@dataclass
class History:
    """Loss per iteration (mean over the iteration's batches) and wall time [s]."""

    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


class DivergenceError(RuntimeError):
    """The loss became NaN/inf or blew up; ``history`` holds the losses so far."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def index_batches(
    n: int, batch_size: int | None = None, shuffle: bool = True, device: Any = None
) -> Callable[[torch.Generator], list[Tensor]]:
    """Batches of indices ``[0, n)``: full batch if ``batch_size`` is None, else mini-batches
    (reshuffled each iteration with the loop's generator when ``shuffle``)."""

    def make(generator: torch.Generator) -> list[Tensor]:
        if batch_size is None or batch_size >= n:
            return [torch.arange(n, device=device)]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        return [chunk.to(device) for chunk in torch.split(order, batch_size)]

    return make


def _build_optimizers(
    groups: Mapping[str, list[nn.Parameter]], settings: Mapping[str, GroupSettings]
) -> dict[str, torch.optim.Optimizer]:
    unknown = set(settings) - set(groups)
    if unknown:
        raise KeyError(f"settings for unknown parameter groups {sorted(unknown)}")
    optimizers = {}
    for name, cfg in settings.items():
        if cfg.optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use {sorted(_OPTIMIZERS)}")
        params = [p for p in groups[name] if p.requires_grad]
        if params:
            optimizers[name] = _OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, **cfg.options)
    return optimizers


def _set_trainable(
    groups: Mapping[str, list[nn.Parameter]], active: set[str], allowed: dict[int, bool]
) -> None:
    for name, params in groups.items():
        for p in params:
            p.requires_grad_(allowed[id(p)] and name in active)


def _check(loss: float, reference: float | None, factor: float, where: str, hist: History):
    if not math.isfinite(loss):
        raise DivergenceError(f"loss is {loss} at {where}; lower the learning rates", hist)
    if reference is not None and loss > factor * max(reference, 1e-30):
        raise DivergenceError(
            f"loss {loss:.4g} at {where} exceeds {factor:g} x the first loss {reference:.4g};"
            " (the loss at the start); lower the learning rates",
            hist,
        )


def _check_parameters(
    groups: Mapping[str, list[nn.Parameter]], active: set[str], where: str, hist: History
) -> None:
    for name in sorted(active & set(groups)):
        if not all(bool(torch.isfinite(p).all()) for p in groups[name]):
            raise DivergenceError(
                f"parameter group {name!r} became NaN/inf at {where}; lower its learning rate",
                hist,
            )


def batch_index(batch: Any) -> tuple[Tensor, Callable[[Tensor], Any]] | None:
    """``(index, rebuild)`` of a batch that is an index tensor, or a tuple whose last item is
    one (``rebuild(part)`` is the batch of a part of the index); None for any other batch."""
    if isinstance(batch, Tensor):
        return batch, lambda c: c
    if isinstance(batch, tuple) and batch and isinstance(batch[-1], Tensor):
        return batch[-1], lambda c: (*batch[:-1], c)
    return None


def split_batch(batch: Any, size: int | None) -> list[tuple[Any, float]]:
    """Chunks of a batch and their weights (fraction of the batch): an index tensor, or a tuple
    whose last item is one, is cut into pieces of ``size``; anything else stays whole."""
    found = batch_index(batch)
    if size is None or found is None:
        return [(batch, 1.0)]
    index, rebuild = found
    n = max(int(index.shape[0]), 1)
    return [(rebuild(c), c.shape[0] / n) for c in torch.split(index, size)]


def batch_loss(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    batch: Any,
    chunk_size: int | None = None,
    backward: bool = True,
) -> float:
    """The batch loss (a mean over the batch), evaluated in chunks of ``chunk_size`` items
    whose gradients accumulate (with ``backward``): the same update as the whole batch at a
    fraction of the memory, and cache-friendly on a CPU. In a ``torch.distributed`` process
    group each rank evaluates its share of the batch (:func:`reconstruct.distributed.shard`)
    and the losses and gradients are summed over the ranks."""
    total = 0.0
    pieces = shard([(batch, 1.0)], batch_index)
    for part, share in pieces:
        for sub, weight in split_batch(part, chunk_size):
            if backward:
                loss = loss_fn(model, sub) * (weight * share)
                loss.backward()
            else:
                with torch.no_grad():
                    loss = loss_fn(model, sub) * (weight * share)
            total += float(loss.detach())
    if backward:
        all_reduce_gradients(model.parameters())
    return all_reduce_sum(total)


def _closure(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batch: Any,
             chunk_size: int | None = None, backward: bool = True) -> Tensor:
    if backward:
        model.zero_grad(set_to_none=True)
    return torch.tensor(batch_loss(model, loss_fn, batch, chunk_size, backward))


def _step(
    optimizers: Mapping[str, torch.optim.Optimizer],
    active: set[str],
    settings: Mapping[str, GroupSettings],
    closure: Callable[..., Tensor],
    loss: float,
) -> None:
    """Step the active groups: plain optimisers first, then closure-based ones; a line search
    that steps first reuses the batch's loss and gradient."""
    names = sorted(active & set(optimizers), key=lambda n: settings[n].optimizer in _CLOSURE)
    fresh = True  # the gradients in .grad belong to the current parameters
    for name in names:
        if settings[name].optimizer == "line_search":
            optimizers[name].step(closure, loss=loss if fresh else None)
        elif settings[name].optimizer in _CLOSURE:
            optimizers[name].step(closure)
        else:
            optimizers[name].step()
        fresh = False


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while inside (restored to PyTorch's default,
    off, on exit). Far-field intensities outside the bright-field disc and their gradients
    underflow into denormals, which made a multislice iteration ~90x slower on a CPU."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def optimize(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    batches: Callable[[torch.Generator], Iterable[Any]] | Sequence[Any],
    settings: Mapping[str, GroupSettings | Mapping[str, Any]],
    n_iter: int,
    constraints: Sequence[Callable[[nn.Module, int], None]] = (),
    seed: int | None = 0,
    progress: bool = True,
    divergence_factor: float = 1e6,
    callback: Callable[[nn.Module, int, float], None] | None = None,
    chunk_size: int | None = None,
) -> History:
    """Run ``n_iter`` iterations (passes over ``batches``) and return the loss history.

    Each batch: zero grads, ``loss_fn(model, batch).backward()``, step every active group's
    own optimiser, then apply ``constraints``. Runs with denormals flushed
    (:func:`flush_denormals`). ``chunk_size`` evaluates each batch in chunks
    with accumulated gradients (:func:`batch_loss`; same updates, less memory). Raises
    :class:`DivergenceError`.
    """
    with flush_denormals():
        return _optimize(model, loss_fn, batches, settings, n_iter, constraints, seed,
                         progress, divergence_factor, callback, chunk_size)


def _optimize(model, loss_fn, batches, settings, n_iter, constraints, seed,  # noqa: ANN001
              progress, divergence_factor, callback, chunk_size) -> History:  # noqa: ANN001
    if seed is not None:
        torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    settings = {
        k: v if isinstance(v, GroupSettings) else GroupSettings(**v) for k, v in settings.items()
    }
    groups = model.parameter_groups()
    allowed = {id(p): p.requires_grad for params in groups.values() for p in params}
    optimizers = _build_optimizers(groups, settings)
    history, reference, start = History(), None, time.perf_counter()
    bar = progress_bar(range(n_iter), "reconstruct", progress and is_main())
    try:
        for it in bar:
            active = {name for name, cfg in settings.items() if cfg.active(it)}
            _set_trainable(groups, active, allowed)
            total, count = 0.0, 0
            for b, batch in enumerate(batches(generator) if callable(batches) else batches):
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                value = batch_loss(model, loss_fn, batch, chunk_size)
                _check(value, None, divergence_factor, f"iteration {it}, batch {b}", history)
                reference = value if reference is None else reference
                closure = partial(_closure, model, loss_fn, batch, chunk_size)
                _step(optimizers, active, settings, closure, value)
                with torch.no_grad():
                    for constraint in constraints:
                        constraint(model, it)
                total, count = total + value, count + 1
            for name in active & set(optimizers):
                for group in optimizers[name].param_groups:
                    group["lr"] *= settings[name].lr_decay
            history.loss.append(total / max(count, 1))
            _check(history.loss[-1], reference, divergence_factor, f"iteration {it}", history)
            _check_parameters(groups, active, f"iteration {it}", history)
            bar.set_postfix(loss=f"{history.loss[-1]:.4g}")
            if callback is not None:
                callback(model, it, history.loss[-1])
    finally:
        _set_trainable(groups, set(groups), allowed)
        history.seconds = time.perf_counter() - start
        bar.close()
    return history
