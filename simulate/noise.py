"""Poisson noise at load time (CONVENTIONS.md, Dose and noise).

``counts ~ Poisson(I · dose_per_tilt · step_x · step_y)`` with ``I`` the noise-free intensity per
incident electron. Half-set realisations for FSC use seeds ``s`` and ``s + 1``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from simulate.config import NoiseConfig
from simulate.validate import validate_noise


def dose_per_tilt(cfg: NoiseConfig, n_tilts: int) -> float:
    """Dose in e/Å² delivered to each tilt (``inf`` for noise-free data)."""
    validate_noise(cfg)
    return float(cfg.dose) if cfg.per == "tilt" else float(cfg.dose) / n_tilts


def electrons_per_position(cfg: NoiseConfig, n_tilts: int, step: tuple[float, float]) -> float:
    """Incident electrons per scan position: dose per tilt × step area (Å²)."""
    return dose_per_tilt(cfg, n_tilts) * step[0] * step[1]


def apply_dose(intensity: NDArray[np.floating], electrons: float, seed: int) -> NDArray[np.float32]:
    """Expected intensities per electron → detected counts (float32).

    With ``electrons = inf`` the data are returned noise-free, scaled to one electron (unchanged).
    Otherwise each pixel is drawn from ``Poisson(I · electrons)`` with ``numpy``'s PCG64 seeded
    by ``seed``; the same seed gives identical counts.
    """
    if math.isinf(electrons):
        return np.asarray(intensity, dtype=np.float32)
    if not electrons > 0:
        raise ValueError(f"electrons per position must be > 0, got {electrons}")
    rng = np.random.default_rng(seed)
    lam = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None) * electrons
    return rng.poisson(lam).astype(np.float32)
