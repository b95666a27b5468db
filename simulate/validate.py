"""Validation of a simulation config before any compute. Every error names key, value, allowed."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from simulate.config import NoiseConfig, SimulationConfig
from simulate.errors import ConfigError
from simulate.physics import antialias_cutoff_mrad

PARAMETRIZATIONS = ("lobato", "kirkland")
PROJECTIONS = ("infinite", "finite")
METHODS = ("multislice", "prism")
DOSE_PER = ("tilt", "series")


def _positive(key: str, value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ConfigError(key, value, "a finite positive number")


def validate_noise(cfg: NoiseConfig) -> None:
    """Dose must be positive (``inf`` = noise-free) and said to be per tilt or per series."""
    if not (isinstance(cfg.dose, int | float) and cfg.dose > 0):
        raise ConfigError("noise.dose", cfg.dose, "a positive dose in e/Å², or inf (noise-free)")
    if cfg.per not in DOSE_PER:
        raise ConfigError("noise.per", cfg.per, f"one of {DOSE_PER}")


def validate_optics(cfg: SimulationConfig, cell: NDArray[np.float64]) -> None:
    """Energy, aperture, potential sampling and detector angles against the antialias limit."""
    m, p, d = cfg.microscope, cfg.potential, cfg.detector
    _positive("microscope.energy", m.energy)
    _positive("microscope.semiangle", m.semiangle)
    if not m.source_size >= 0:
        raise ConfigError("microscope.source_size", m.source_size, "a FWHM >= 0 Å")
    _positive("potential.sampling", p.sampling)
    _positive("potential.slice_thickness", p.slice_thickness)
    if p.parametrization not in PARAMETRIZATIONS:
        raise ConfigError(
            "potential.parametrization", p.parametrization, f"one of {PARAMETRIZATIONS}"
        )
    if p.projection not in PROJECTIONS:
        raise ConfigError("potential.projection", p.projection, f"one of {PROJECTIONS}")
    cutoff = antialias_cutoff_mrad(m.energy, p.sampling, float(cell[0]))
    limit = f"(0, {cutoff:.2f}] mrad, the antialias limit of potential.sampling={p.sampling} Å"
    if d.pixelated and not 0 < d.max_angle <= cutoff:
        raise ConfigError("detector.max_angle", d.max_angle, f"an angle in {limit}")
    if not (d.pixelated or d.adf):
        raise ConfigError("detector.pixelated", d.pixelated, "true, or detector.adf = true")
    if cfg.method.name not in METHODS:
        raise ConfigError("method.name", cfg.method.name, f"one of {METHODS}")
    if cfg.method.prism_interpolation < 1:
        raise ConfigError(
            "method.prism_interpolation", cfg.method.prism_interpolation, "an integer >= 1"
        )
    if d.adf:
        if not 0 <= d.adf_inner < d.adf_outer:
            raise ConfigError("detector.adf_inner", d.adf_inner, "0 <= adf_inner < adf_outer")
        if d.adf_outer > cutoff:
            raise ConfigError("detector.adf_outer", d.adf_outer, f"an angle in {limit}")
        if d.adf_defocus is not None and not np.isfinite(d.adf_defocus):
            raise ConfigError("detector.adf_defocus", d.adf_defocus, "a finite defocus in Å")


def validate_scan(cfg: SimulationConfig, cell: NDArray[np.float64]) -> None:
    """Step positive, scan region inside the cell."""
    s = cfg.scan
    _positive("scan.step", s.step)
    if not s.jitter >= 0:
        raise ConfigError("scan.jitter", s.jitter, "a standard deviation >= 0 Å")
    for key, value in (("scan.start", s.start), ("scan.end", s.end)):
        if value is None:
            continue
        if len(value) != 2 or any(v < 0 or v > c for v, c in zip(value, cell[:2], strict=False)):
            raise ConfigError(
                key, list(value), f"(x, y) in Å inside the cell [0, {cell[0]}] x [0, {cell[1]}]"
            )
    start = np.asarray(s.start if s.start is not None else [0.0, 0.0])
    end = np.asarray(s.end if s.end is not None else cell[:2])
    if np.any(end - start < s.step):
        raise ConfigError(
            "scan.end", list(end), f"at least one step ({s.step} Å) beyond scan.start"
        )


def validate_tilts(cfg: SimulationConfig) -> None:
    """Tilt count and range (at most 180°)."""
    t = cfg.tilts
    if t.euler is not None:
        arr = np.asarray(t.euler, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
            raise ConfigError(
                "tilts.euler", t.euler, "a non-empty list of [phi, theta, psi] in degrees"
            )
        thetas = arr[:, 1]
    elif t.angles is not None:
        if len(t.angles) == 0:
            raise ConfigError("tilts.angles", t.angles, "a non-empty list of angles in degrees")
        thetas = np.asarray(t.angles, dtype=float)
    else:
        if len(t.range) != 2 or t.range[0] > t.range[1]:
            raise ConfigError("tilts.range", t.range, "[min, max] in degrees with min <= max")
        if t.count < 1:
            raise ConfigError("tilts.count", t.count, "an integer >= 1")
        thetas = np.asarray(t.range, dtype=float)
    if np.ptp(thetas) > 180.0:
        key = (
            "tilts.euler"
            if t.euler is not None
            else "tilts.angles"
            if t.angles is not None
            else "tilts.range"
        )
        raise ConfigError(key, f"span {np.ptp(thetas)}°", "a tilt span of at most 180°")
    if t.shift_max < 0 or t.euler_error < 0:
        raise ConfigError(
            "tilts.shift_max/euler_error", (t.shift_max, t.euler_error), "values >= 0"
        )


def validate_truth(cfg: SimulationConfig, cell: NDArray[np.float64]) -> None:
    """The voxel grid must tile the cell exactly."""
    v = cfg.truth.voxel_size
    _positive("truth.voxel_size", v)
    n = cell / v
    if np.any(np.abs(n - np.rint(n)) > 1e-6):
        raise ConfigError(
            "truth.voxel_size", v, f"a size that divides the cell {list(cell)} Å exactly"
        )


def validate_simulation(cfg: SimulationConfig, cell: NDArray[np.float64]) -> None:
    """All checks that need only the config and the cell size (Å, ``[3]``)."""
    if cfg.phonons.num_configs < 0:
        raise ConfigError("phonons.num_configs", cfg.phonons.num_configs, "an integer >= 0")
    validate_optics(cfg, cell)
    validate_scan(cfg, cell)
    validate_tilts(cfg)
    validate_truth(cfg, cell)
