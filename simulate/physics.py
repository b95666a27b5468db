"""Small physical helpers for the simulation side (the torch layer lives in reconstruct)."""

from __future__ import annotations

import abtem
from abtem.core.energy import energy2wavelength


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength in Å at ``energy`` eV (abTEM's formula)."""
    return float(energy2wavelength(energy))


def antialias_cutoff_mrad(energy: float, sampling: float, extent: float) -> float:
    """Largest scattering angle (mrad) that abTEM represents on this grid: its 2/3 antialias
    aperture, rounded to whole reciprocal pixels exactly as abTEM does it."""
    grid = abtem.Probe(energy=energy, semiangle_cutoff=1.0, extent=extent, sampling=sampling)
    return float(min(grid.cutoff_angles))
