"""The one fit layer: builders of the shared components from :class:`TomoData`, and :func:`fit`.

A variant composes a :class:`Problem` (a model with ``parameter_groups()``, a loss, batches,
per-group settings, constraints and a map from the fitted model to its named estimates) and
calls :func:`fit`, which runs :func:`reconstruct.loop.optimize`, times it, computes the
R-factor of the fitted model against its data, and returns the :class:`Reconstruction`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from reconstruct.data import TomoData
from reconstruct.loop import GroupSettings, flush_denormals, optimize
from reconstruct.optics import MixedProbe, probe_from_aberrations
from reconstruct.propagation import Propagator
from reconstruct.result import Reconstruction
from reconstruct.tomography import TiltSeriesGeometry

Constraint = Callable[[nn.Module, int], None]


def cell_centre(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Rotation centre (index units, ``[z, x, y]``) of the cell: ``n v / 2`` on every axis with
    voxel ``[k, i, j]`` at ``(i v, j v, (k + 1/2) v)``."""
    nz, nx, ny = shape
    return ((nz - 1) / 2, nx / 2, ny / 2)


def build_geometry(data: TomoData) -> TiltSeriesGeometry:
    """The nominal tilt-series geometry (groups ``angles``, ``shifts``) pivoting at the cell
    centre, on the voxel grid of ``data``."""
    v = data.voxel_size
    return TiltSeriesGeometry(data.euler, data.shifts, voxel=(v, v, v),
                              centre=cell_centre(data.volume_shape))


def build_probe(data: TomoData, n_modes: int = 1, learn_occupations: bool = False,
                shape: tuple[int, int] | None = None) -> MixedProbe:
    """The probe of the microscope parameters of ``data`` (in its precision) on a window
    ``shape`` (default the cell, ``[nx, ny]``) of voxel-sized pixels, centred at ``M // 2``
    (what the scanning code expects); ``n_modes > 1`` adds Hermite-like modes."""
    v = data.voxel_size
    shape = shape or tuple(data.volume_shape[1:])
    probe = probe_from_aberrations(shape, (v, v), data.energy, data.semiangle,
                                   data.aberrations, centered=True, device=data.device,
                                   dtype=data.euler.dtype)
    return MixedProbe(probe, n_modes=n_modes, learn_occupations=learn_occupations)


def build_propagator(data: TomoData, n_slices: int, antialias: bool = False,
                     shape: tuple[int, int] | None = None, thickness: float | None = None,
                     tilt: Tensor | None = None, per_position_thickness: int | None = None,
                     centred: bool = False) -> Propagator:
    """Fresnel propagator (groups ``slice_thickness``, ``tilt``) for ``n_slices`` equal slices
    through ``thickness`` Å (default the cell depth), on a window ``shape`` (default the cell)
    of voxel-sized pixels; ``tilt`` ``[2]`` or ``[K, 2]`` rad (default none);
    ``per_position_thickness=K`` makes a thickness map of ``K`` scan positions; ``centred``
    places the slab's middle at the cell's middle depth (the probe's defocus refers to the cell
    entrance, as in the simulation)."""
    nz, v = data.volume_shape[0], data.voxel_size
    shape = shape or tuple(data.volume_shape[1:])
    dz = torch.tensor((thickness or nz * v) / n_slices, dtype=data.euler.dtype)
    if per_position_thickness:
        dz = dz.expand(per_position_thickness, 1)
    return Propagator(shape, (v, v), data.energy, dz, tilt=tilt, antialias=antialias,
                      dtype=data.euler.dtype, device=data.device,
                      centre_depth=nz * v / 2 if centred else None)


def nonnegative(name: str) -> Constraint:
    """A constraint clamping the model attribute ``name`` (a tensor; dotted for a
    submodule's, e.g. ``object.potential``) to ``>= 0``."""

    def clamp(model: nn.Module, iteration: int) -> None:
        target = model
        for part in name.split("."):
            target = getattr(target, part)
        target.clamp_(min=0.0)

    return clamp


Residual = Callable[[nn.Module], Iterable[tuple[Tensor, Tensor]]]


@dataclass
class Problem:
    """Everything :func:`fit` needs.

    ``estimates(model) -> dict`` maps the fitted model to :class:`Reconstruction` fields (e.g.
    ``{"volume": model.volume}``); ``residual(model)`` yields ``(observed, calculated)`` pairs
    over all the data (evaluated without gradients) for the R-factor, or is None.
    """

    model: nn.Module
    loss: Callable[[nn.Module, Any], Tensor]
    batches: Callable[[torch.Generator], Iterable[Any]] | Sequence[Any]
    settings: Mapping[str, GroupSettings]
    estimates: Callable[[nn.Module], dict[str, Any]]
    constraints: Sequence[Constraint] = ()
    residual: Residual | None = None
    info: dict[str, Any] = field(default_factory=dict)


def r_factor(pairs: Iterable[tuple[Tensor, Tensor]]) -> float:
    """``Σ|I_obs − I_cal| / Σ|I_obs|`` accumulated over ``(observed, calculated)`` pairs."""
    num = den = 0.0
    for observed, calculated in pairs:
        num += float((observed - calculated).abs().sum())
        den += float(observed.abs().sum())
    return num / den if den > 0 else float("nan")


def fit(problem: Problem, iterations: int, seed: int, progress: bool,
        divergence_factor: float = 1e6, chunk_size: int | None = None) -> Reconstruction:
    """Run the shared loop on ``problem`` and return its :class:`Reconstruction` (estimates
    detached). Raises :class:`reconstruct.loop.DivergenceError` like :func:`optimize`."""
    history = optimize(problem.model, problem.loss, problem.batches, problem.settings,
                       iterations, constraints=problem.constraints, seed=seed,
                       progress=progress, divergence_factor=divergence_factor,
                       chunk_size=chunk_size)
    quality = None
    if problem.residual is not None:
        with torch.no_grad(), flush_denormals():
            quality = r_factor(problem.residual(problem.model))
    estimates = {k: v.detach() if isinstance(v, Tensor) else v
                 for k, v in problem.estimates(problem.model).items()}
    final = history.loss[-1] if history.loss else float("nan")
    return Reconstruction(history=history, r_factor=quality,
                          seconds_per_iteration=history.seconds / max(len(history.loss), 1),
                          info={**problem.info, "final_loss": final}, **estimates)
