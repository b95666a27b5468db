"""What every method returns: a :class:`Reconstruction` of named, typed, optional estimates.

The harness scores whatever a method estimated (``experiments/scoring.py`` maps each estimate
kind to its scorers); a method fills in only what it estimates. Units are those of the configs
and of the dataset's truth (CONVENTIONS.md): Å, mrad for mistilts, degrees for Euler angles.

Estimates (all optional):

- ``volume`` ``[nz, nx, ny]``: on the :class:`~reconstruct.data.TomoData` grid (V for the
  multislice methods, arbitrary units for the linear ones).
- ``atoms``: :class:`AtomsEstimate`, atoms found directly (no tracing step).
- ``object_states`` ``[K, S, X, Y]``: projected potential (V Å) of ``K`` object states and
  ``S`` slices, pixel ``(i, j)`` at ``object_origin + (i, j) * object_sampling`` Å.
- ``probe`` ``[P, M1, M2]`` complex: the probe modes (centred at ``M // 2``).
- ``tilt`` ``[2]`` (θx, θy) mrad, one specimen mistilt; ``tilt_map`` ``[sx, sy, 2]`` mrad, one
  per scan position.
- ``slice_thickness`` ``[S]`` Å, the slices' thicknesses (their sum is the specimen's);
  ``thickness_map`` ``[sx, sy]`` Å, the specimen thickness at each scan position.
- ``geometry``: :class:`GeometryEstimate` (Euler angles ``[T, 3]`` degrees, per-tilt shifts
  ``[T, 2]`` Å); ``positions`` ``[T, P, 2]`` Å: refined scan positions.
- ``r_factor``: ``Σ|I_obs − I_cal| / Σ|I_obs|`` of the fitted model against the data it
  fitted (paper 004 eq. 11), computed by :func:`reconstruct.fit.fit`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from reconstruct.loop import History

ArrayOrTensor = Tensor | np.ndarray


@dataclass
class AtomsEstimate:
    """Atoms found by a method: ``positions [N, 3]`` (x, y, z) Å in the specimen frame at zero
    tilt (the frame of ``truth/positions``); ``numbers [N]`` atomic numbers of the assigned
    species (0 = not an atom, dropped before matching); optional ``heights [N]`` (the model's
    units) and ``widths [N]`` Å."""

    positions: ArrayOrTensor
    numbers: ArrayOrTensor
    heights: ArrayOrTensor | None = None
    widths: ArrayOrTensor | None = None


@dataclass
class GeometryEstimate:
    """Refined tilt-series geometry: ``euler_deg [T, 3]`` (φ, θ, ψ) degrees with
    ``R = R_z(ψ) R_y(θ) R_x(φ)`` and ``shifts [T, 2]`` (τx, τy) Å."""

    euler_deg: ArrayOrTensor
    shifts: ArrayOrTensor


ESTIMATES = ("volume", "atoms", "object_states", "probe", "tilt", "tilt_map",
             "slice_thickness", "thickness_map", "geometry", "positions", "r_factor")
_NESTED = {"atoms": AtomsEstimate, "geometry": GeometryEstimate}
_SIDE = ("object_sampling", "object_origin")  # how to read object_states


@dataclass
class Reconstruction:
    """A method's result: its named estimates (see the module docstring), the loss
    ``history``, ``seconds_per_iteration`` and free-form ``info`` (JSON-able numbers)."""

    history: History
    seconds_per_iteration: float = float("nan")
    volume: ArrayOrTensor | None = None
    atoms: AtomsEstimate | None = None
    object_states: ArrayOrTensor | None = None
    object_sampling: tuple[float, float] | None = None
    object_origin: tuple[float, float] = (0.0, 0.0)
    probe: ArrayOrTensor | None = None
    tilt: ArrayOrTensor | None = None
    tilt_map: ArrayOrTensor | None = None
    slice_thickness: ArrayOrTensor | float | None = None
    thickness_map: ArrayOrTensor | None = None
    geometry: GeometryEstimate | None = None
    positions: ArrayOrTensor | None = None
    r_factor: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def estimates(self) -> dict[str, Any]:
        """The estimates present, as numpy (nested ones flattened to ``atoms.positions``...),
        plus how to read the object states; what scorers receive and what is saved."""
        out: dict[str, Any] = {}
        for name in ESTIMATES:
            value = getattr(self, name)
            if value is None:
                continue
            if name in _NESTED:
                for f in dataclasses.fields(value):
                    if getattr(value, f.name) is not None:
                        out[f"{name}.{f.name}"] = _numpy(getattr(value, f.name))
            else:
                out[name] = _numpy(value)
        if self.object_states is not None:
            out |= {k: np.asarray(getattr(self, k), dtype=np.float64) for k in _SIDE
                    if getattr(self, k) is not None}
        return out


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        value = value.resolve_conj().numpy()
    return np.asarray(value)


def estimate_kinds(estimates: dict[str, Any]) -> set[str]:
    """Estimate kinds present in a flat estimates dict (``atoms.positions`` → ``atoms``)."""
    return {k.split(".")[0] for k in estimates}


def save_estimates(path: str | Path, estimates: dict[str, np.ndarray]) -> Path:
    """Write flat estimates to ``path`` (``.npz``) atomically, the volume to ``volume.npy``
    beside it (so that ``np.load("volume.npy")`` works)."""
    from simulate.fileio import atomic_write

    path = Path(path)
    rest = {k: v for k, v in estimates.items() if k != "volume"}
    if "volume" in estimates:
        atomic_write(path.with_name("volume.npy"), lambda p: np.save(p, estimates["volume"]))
    atomic_write(path, lambda p: np.savez(p, **rest))
    return path


def load_estimates(path: str | Path) -> dict[str, np.ndarray]:
    """Inverse of :func:`save_estimates`."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as f:
            out = {k: f[k] for k in f.files}
    if path.with_name("volume.npy").is_file():
        out["volume"] = np.load(path.with_name("volume.npy"))
    return out
