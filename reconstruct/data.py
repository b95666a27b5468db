"""What every reconstruction receives: :class:`TomoData`, and the dataset → ``TomoData`` adapter.

A method never reads the dataset store itself. :func:`from_dataset` draws the noisy measurements
(Poisson at the configured dose, in units of the incident electron), crops the diffraction
patterns to the reconstruction grid and fills in the *nominal* geometry, i.e. what an
experimenter knows; the true geometry stays in the dataset for scoring.

Measurement kinds (:data:`MEASUREMENTS`): ``"diffraction"`` (4D-STEM patterns) and ``"haadf"``
(the ADF/HAADF series). A variant ``requires`` a set of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from simulate.config import NoiseConfig
    from simulate.store import Dataset

MEASUREMENTS = ("diffraction", "haadf")
# the simulation config key that records each kind
MEASUREMENT_KEYS = {"diffraction": "detector.pixelated", "haadf": "detector.adf"}


@dataclass
class TomoData:
    """A tilt series ready for reconstruction, all tensors on one device.

    Geometry is the *nominal* one. The object grid is the cell: ``volume_shape = (nz, nx, ny)``
    voxels of ``voxel_size`` Å; voxel ``[k, i, j]`` is at ``(i v, j v, (k + 1/2) v)`` Å and the
    tilt pivot is the cell centre (``n v / 2`` on every axis), as in the simulation.

    Fields: ``euler [T, 3]`` (φ, θ, ψ) rad; ``shifts [T, 2]`` Å; ``energy`` eV; ``semiangle``
    rad; ``aberrations`` abTEM polar coefficients (``C10 = -defocus``, Å and rad);
    ``positions [T, P, 2]`` Å, absolute in the cell; ``patterns [T, P, n, n]`` per incident
    electron (zero frequency at ``n // 2``, detector sampling ``1 / (n v)`` 1/Å);
    ``haadf [T, sx, sy]`` ADF signal per incident electron at ``haadf_positions
    [T, sx sy, 2]`` Å; ``electrons_per_position`` (``inf`` for noise-free data);
    ``adf_aberrations`` those of the ADF scan where it was recorded with its own defocus
    (None: ``aberrations``); ``species`` the atomic numbers the specimen contains (its
    composition, which an experimenter knows; empty if unknown), for methods that assign
    species themselves.
    """

    volume_shape: tuple[int, int, int]
    voxel_size: float
    euler: Tensor
    shifts: Tensor
    energy: float
    semiangle: float
    aberrations: dict[str, float]
    positions: Tensor | None = None
    patterns: Tensor | None = None
    haadf: Tensor | None = None
    haadf_positions: Tensor | None = None
    electrons_per_position: float = float("inf")
    species: tuple[int, ...] = ()
    adf_aberrations: dict[str, float] | None = None

    @property
    def n_tilts(self) -> int:
        return int(self.euler.shape[0])

    @property
    def device(self) -> torch.device:
        return self.euler.device

    @property
    def kinds(self) -> frozenset[str]:
        """The measurement kinds present (a subset of :data:`MEASUREMENTS`)."""
        return frozenset(k for k, a in (("diffraction", self.patterns), ("haadf", self.haadf))
                         if a is not None)


def crop_patterns(patterns: np.ndarray, n: int | tuple[int, int]) -> np.ndarray:
    """Crop fftshifted ``[..., k1, k2]`` patterns to ``n1 × n2`` (``n`` for both) keeping
    k = 0 at index ``(n1 // 2, n2 // 2)``; each axis is cropped about its own centre."""
    n1, n2 = (n, n) if isinstance(n, int) else n
    k1, k2 = patterns.shape[-2:]
    a1, a2 = k1 // 2 - n1 // 2, k2 // 2 - n2 // 2
    return patterns[..., a1:a1 + n1, a2:a2 + n2]


def adf_defocus(ds: Dataset) -> float:
    """Defocus [Å] of the ADF scan: the metadata's ``adf_defocus_A``, else the simulation
    config's ``detector.adf_defocus`` (datasets written before the key), else the probe's."""
    m = ds.meta
    if m.get("adf_defocus_A") is not None:
        return float(m["adf_defocus_A"])
    own = (ds.config.get("detector") or {}).get("adf_defocus")
    return float(m["defocus_A"] if own is None else own)


def composition(ds: Dataset) -> tuple[int, ...]:
    """The specimen's atomic numbers, ascending: the ``species`` of the metadata (imported
    data), else those of the true atoms, else empty."""
    if ds.meta.get("species"):
        return tuple(sorted(int(z) for z in ds.meta["species"]))
    try:
        return tuple(int(z) for z in np.unique(ds.array("truth/numbers")))
    except KeyError:
        return ()


def from_dataset(ds: Dataset, noise: NoiseConfig, device: torch.device | str,
                 realisation: int = 0, kinds: frozenset[str] | set[str] = frozenset(MEASUREMENTS),
                 max_memory_gb: float | None = None) -> TomoData:
    """Noisy measurements of ``kinds`` and the nominal geometry of ``ds`` on ``device``.

    ``realisation`` 0 and 1 are independent noise draws (the FSC half-sets). Raises
    ``ValueError`` if the detector sampling is not ``1 / (cell extent)``: the patterns could
    not be cropped onto the reconstruction grid. Where the cropped float32 patterns exceed
    ``max_memory_gb`` (``compute.max_memory_gb``, 1e9 bytes; None: no limit) they are staged
    in a scratch zarr store and ``patterns`` is a :class:`reconstruct.stream.ZarrPatterns`
    read per tilt / per batch of positions (bitwise the same values).
    """
    from reconstruct.stream import check_max_memory, stage_patterns, stream_bytes

    max_memory_gb = check_max_memory(max_memory_gb)
    m, t = ds.meta, ds.n_tilts
    grid = m.get("grid_shape") or ds.group["truth/potential"].shape  # imported data: the meta
    shape = tuple(int(s) for s in grid)
    v = float(m["voxel_size_A"])

    def as_t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)

    data = TomoData(
        volume_shape=shape, voxel_size=v,
        euler=as_t(np.deg2rad(ds.array("geometry/euler_nominal_deg"))),
        shifts=torch.zeros(t, 2, device=device), energy=float(m["energy_eV"]),
        semiangle=float(m["semiangle_mrad"]) * 1e-3,
        aberrations={"C10": -float(m["defocus_A"]), **dict(m["aberrations"] or {})},
        electrons_per_position=ds.electrons_per_position(noise),
        species=composition(ds),
    )
    nominal = ds.array("geometry/positions_nominal")
    if "diffraction" in kinds and ds.has_diffraction:
        for axis in (0, 1):
            if not math.isclose(m["reciprocal_sampling_invA"][axis] * shape[1 + axis] * v, 1.0,
                                rel_tol=1e-6):
                raise ValueError("detector sampling is not 1 / (cell extent): cannot crop to "
                                 "the grid")
        k = ds.group["measurements/diffraction"].shape[-2:]
        n = (min(k[0], shape[1]), min(k[1], shape[2]))
        if max_memory_gb is not None and stream_bytes(ds, n) > max_memory_gb * 1e9:
            data.patterns = stage_patterns(ds, noise, realisation, n, device, max_memory_gb)
        else:
            raw = ds.measurements(noise, realisation, "diffraction", per_electron=True)
            data.patterns = as_t(crop_patterns(raw.reshape(t, -1, *raw.shape[-2:]), n))
        data.positions = as_t(nominal)
    if "haadf" in kinds and ds.has_haadf:
        data.haadf = as_t(ds.measurements(noise, realisation, "haadf", per_electron=True))
        data.haadf_positions = as_t(nominal)
        data.adf_aberrations = {**data.aberrations, "C10": -adf_defocus(ds)}
    return data


def subsample_rows(data: TomoData, factor: int, offset: int) -> TomoData:
    """The raster rows ``offset, offset + factor, ...`` of every tilt's scan (its slow, x
    axis): a raster again, of ``factor`` x the step along x, holding ``1 / factor`` of the
    patterns and ADF samples (paper 000 Fig. 3d's half-sets, made by skipping patterns;
    ``offset`` 0 and ``factor // 2`` give two disjoint, interleaved halves)."""
    from reconstruct.scanning import raster_shape

    out = dataclasses.replace(data)
    for pos_key, value_key in (("positions", "patterns"), ("haadf_positions", "haadf")):
        pos, values = getattr(data, pos_key), getattr(data, value_key)
        if pos is None or values is None:
            continue
        t = pos.shape[0]
        sx, sy = raster_shape(pos[0])
        grid = values.reshape(t, sx, sy, *values.shape[2 if values.dim() > 3 else 3:])
        rows = grid[:, offset::factor]
        setattr(out, pos_key, pos.reshape(t, sx, sy, 2)[:, offset::factor].reshape(t, -1, 2))
        setattr(out, value_key, rows.reshape(t, -1, *values.shape[2:]) if values.dim() > 3
                else rows)
    return out
