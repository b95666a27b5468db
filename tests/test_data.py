"""The dataset → ``TomoData`` adapter (``reconstruct/data.py``): what every method receives.

Noise-free data arrive unchanged (cropped about k = 0 onto the cell grid), noisy data are
Poisson counts per incident electron (mean the noise-free intensity, variance intensity /
electrons), the geometry is the nominal one, and only the requested kinds are loaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconstruct.data import crop_patterns, from_dataset
from simulate.config import NoiseConfig

CPU = torch.device("cpu")


def test_noise_free_data_are_the_stored_intensities_on_the_cell_grid(tiny_dataset):
    ds = tiny_dataset
    data = from_dataset(ds, NoiseConfig(dose=float("inf")), CPU)
    raw = ds.array("measurements/diffraction")  # [T, sx, sy, 42, 42]
    n = data.volume_shape[1]
    assert data.patterns.shape == (ds.n_tilts, raw.shape[1] * raw.shape[2], n, n)
    # detector sampling 1 / (n v): the crop keeps k = 0 at n // 2, the centre of the (round,
    # centred) bright-field disc of the mean pattern
    flat = raw.reshape(ds.n_tilts, -1, *raw.shape[-2:])
    np.testing.assert_array_equal(data.patterns.numpy(), crop_patterns(flat, n))
    mean = data.patterns.double().mean((0, 1))
    k = torch.arange(n, dtype=torch.float64)
    com = [float((mean.sum(1 - a) * k).sum() / mean.sum()) for a in (0, 1)]
    assert com == pytest.approx([n // 2, n // 2], abs=0.25)
    np.testing.assert_array_equal(data.haadf.numpy(), ds.array("measurements/haadf"))
    np.testing.assert_allclose(data.euler.numpy(),
                               np.deg2rad(ds.array("geometry/euler_nominal_deg")), rtol=1e-6)
    np.testing.assert_allclose(data.positions.numpy(), ds.array("geometry/positions_nominal"))
    assert data.aberrations["C10"] == -ds.meta["defocus_A"]
    assert data.semiangle == pytest.approx(ds.meta["semiangle_mrad"] * 1e-3)
    assert data.kinds == {"diffraction", "haadf"}
    assert data.electrons_per_position == float("inf")


def test_noisy_data_are_poisson_counts_per_incident_electron(tiny_dataset):
    """At a dose d per tilt and step s, e = d s² electrons per position: the data are whole
    electrons / e, with mean the noise-free intensity I and variance I / e (the reduced χ² of
    pixels with I e >= 5 is 1; 10 noise realisations of the 128 ADF values)."""
    ds = tiny_dataset
    clean = from_dataset(ds, NoiseConfig(dose=float("inf")), CPU)
    e = 2e4 * 1.6**2
    draws = [from_dataset(ds, NoiseConfig(dose=2e4, per="tilt", seed=s), CPU) for s in range(10)]
    assert draws[0].electrons_per_position == pytest.approx(e)
    for kind in ("patterns", "haadf"):
        a = torch.stack([getattr(d, kind) for d in (draws[:1] if kind == "patterns" else draws)])
        b = getattr(clean, kind).double().expand_as(a)
        a = a.double()
        assert torch.allclose(a * e, (a * e).round(), atol=1e-3), kind  # whole electrons
        assert float(a.sum() / b.sum()) == pytest.approx(1.0, rel=0.02), kind
        lit = b * e >= 5
        chi2 = float(((a - b)[lit] ** 2 / (b[lit] / e)).mean())
        assert chi2 == pytest.approx(1.0, abs=0.15), (kind, chi2)
    other = from_dataset(ds, NoiseConfig(dose=2e4, per="tilt", seed=0), CPU, realisation=1)
    assert not torch.equal(other.patterns, draws[0].patterns)  # the other FSC half-set
    assert torch.equal(other.patterns, draws[1].patterns)  # realisation 1 is seed s + 1


def test_only_the_requested_kinds_are_loaded(tiny_dataset):
    data = from_dataset(tiny_dataset, NoiseConfig(dose=float("inf")), CPU, kinds={"haadf"})
    assert data.patterns is None and data.positions is None and data.kinds == {"haadf"}
