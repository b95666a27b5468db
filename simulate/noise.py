"""Poisson noise at load time (CONVENTIONS.md, Dose and noise).

``counts ~ Poisson(I · dose_per_tilt · step_x · step_y)`` with ``I`` the noise-free intensity per
incident electron. Half-set realisations for FSC use seeds ``s`` and ``s + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from simulate.config import NoiseConfig
from simulate.validate import validate_noise

Sampler = Callable[[NDArray[np.floating]], NDArray[np.float32]]  # intensities → counts


def dose_per_tilt(cfg: NoiseConfig, n_tilts: int) -> float:
    """Dose in e/Å² delivered to each tilt (``inf`` for noise-free data)."""
    validate_noise(cfg)
    return float(cfg.dose) if cfg.per == "tilt" else float(cfg.dose) / n_tilts


def electrons_per_position(cfg: NoiseConfig, n_tilts: int, step: tuple[float, float]) -> float:
    """Incident electrons per scan position: dose per tilt × step area (Å²)."""
    return dose_per_tilt(cfg, n_tilts) * step[0] * step[1]


def dose_sampler(electrons: float, seed: int) -> Sampler:
    """Expected intensities per electron → detected counts (float32), block by block.

    The returned function draws ``Poisson(I · electrons)`` for each block it is given from one
    ``numpy`` PCG64 generator seeded by ``seed``. ``Generator.poisson`` fills its output in C
    order, consuming the stream element by element, so the consecutive C-order blocks of an
    array (e.g. ``a[0, :r]``, ``a[0, r:]``, ``a[1]``, ... of ``a [T, sx, sy, kx, ky]``) get
    bitwise the counts that one draw over the whole array gets (:func:`apply_dose`). With
    ``electrons = inf`` each block is returned noise-free (float32, unscaled). Raises
    ``ValueError`` now (not at the first block) unless ``electrons > 0``.
    """
    if math.isinf(electrons):
        return lambda intensity: np.asarray(intensity, dtype=np.float32)
    if not electrons > 0:
        raise ValueError(f"electrons per position must be > 0, got {electrons}")
    rng = np.random.default_rng(seed)

    def draw(intensity: NDArray[np.floating]) -> NDArray[np.float32]:
        lam = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None) * electrons
        return rng.poisson(lam).astype(np.float32)

    return draw


def apply_dose(intensity: NDArray[np.floating], electrons: float, seed: int) -> NDArray[np.float32]:
    """Expected intensities per electron → detected counts (float32).

    With ``electrons = inf`` the data are returned noise-free, scaled to one electron (unchanged).
    Otherwise each pixel is drawn from ``Poisson(I · electrons)`` with ``numpy``'s PCG64 seeded
    by ``seed``; the same seed gives identical counts (and :func:`dose_sampler` gives them
    block by block).
    """
    return dose_sampler(electrons, seed)(intensity)
