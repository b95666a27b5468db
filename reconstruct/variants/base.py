"""What every tomography variant receives and returns, and the variant registry.

A variant is a short composition of the shared physics layer (``reconstruct.*``) and the one
optimisation loop (:func:`reconstruct.loop.optimize`). It is registered by name with its
parameter schema and the measurements it needs, so that bad combinations are refused before
any compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from reconstruct.loop import History


class VariantConfigError(ValueError):
    """A variant parameter is invalid; names the key (``algorithm.<field>``), value, allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}' = {value!r} is invalid: {allowed}")


@dataclass
class TomoData:
    """A tilt series ready for reconstruction, all tensors on one device.

    Geometry is the *nominal* one (what an experimenter knows). The object grid is the cell:
    ``volume_shape = (nz, nx, ny)`` voxels of ``voxel_size`` Å; voxel ``[k, i, j]`` is at
    ``(i v, j v, (k + 1/2) v)`` Å and the tilt pivot is the cell centre ``(n v / 2)`` on every
    axis, as in the simulation.
    """

    volume_shape: tuple[int, int, int]
    voxel_size: float  # Å
    euler: Tensor  # [T, 3] (phi, theta, psi) rad
    shifts: Tensor  # [T, 2] Å
    energy: float  # eV
    semiangle: float  # rad
    aberrations: dict[str, float]  # abTEM polar coefficients, C10 = -defocus (Å, rad)
    positions: Tensor | None = None  # [T, P, 2] Å, probe positions
    patterns: Tensor | None = None  # [T, P, n, n] per incident electron, zero frequency at n//2
    pattern_mask: Tensor | None = None  # [n, n] bool, measured pixels
    haadf: Tensor | None = None  # [T, sx, sy] ADF signal
    haadf_positions: Tensor | None = None  # [T, sx*sy, 2] Å
    electrons_per_position: float = float("inf")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tilts(self) -> int:
        return int(self.euler.shape[0])

    @property
    def device(self) -> torch.device:
        return self.euler.device


@dataclass
class Reconstruction:
    """A variant's result: ``volume [nz, nx, ny]`` (V for multislice variants, arbitrary units
    for linear ones) on the grid of :class:`TomoData`, the loss history and timings."""

    volume: Tensor
    history: History
    seconds_per_iteration: float
    info: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[TomoData, Any, int, bool], Reconstruction]


@dataclass(frozen=True)
class Variant:
    """A registered variant: its ``schema`` (dataclass of parameters, with ``name``), the
    measurements it ``requires`` (``"diffraction"`` or ``"haadf"``), ``run`` and an optional
    ``check`` of parameter combinations (raising :class:`VariantConfigError`)."""

    name: str
    schema: type
    requires: str
    run: Runner
    check: Callable[[Any], None] | None = None


VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to :data:`VARIANTS` (names are unique)."""
    if variant.name in VARIANTS:
        raise KeyError(f"variant {variant.name!r} registered twice")
    VARIANTS[variant.name] = variant
    return variant


def variant_params(params: Mapping[str, Any] | Any) -> tuple[Variant, Any]:
    """Look up the variant named in ``params`` and build its schema, refusing unknown keys and
    invalid combinations by name (before any compute)."""
    data = dict(params) if isinstance(params, Mapping) else dataclasses.asdict(params)
    name = data.get("name")
    if name not in VARIANTS:
        raise VariantConfigError("algorithm.name", name, f"one of {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    allowed = {f.name for f in dataclasses.fields(variant.schema)}
    for key, value in data.items():
        if key not in allowed:
            raise VariantConfigError(f"algorithm.{key}", value, f"a key of {sorted(allowed)}")
    cfg = variant.schema(**data)
    if variant.check is not None:
        variant.check(cfg)
    return variant, cfg
