"""abTEM tilt-series generator: sum rules, metadata, tilt geometry, noise, truth."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import tiny_config

from simulate.config import NoiseConfig
from simulate.geometry import euler_matrix, transform_positions
from simulate.noise import apply_dose, electrons_per_position
from simulate.physics import antialias_cutoff_mrad, wavelength
from simulate.pipeline import simulation_config
from simulate.tiltseries import simulate_tilt_series


def test_patterns_sum_to_one_minus_what_leaves_the_detector(tiny_dataset):
    diff = tiny_dataset.array("measurements/diffraction")
    adf = tiny_dataset.array("measurements/haadf")  # from max_angle to the antialias limit
    total = diff.sum((-1, -2))
    assert total.max() <= 1 + 1e-5
    assert total.min() < 0.99  # the particle does scatter out of the pattern
    assert np.all(total + adf >= 1 - 1e-3)  # what is missing went to larger angles


def test_metadata_matches_config(tiny_dataset):
    meta, cfg = tiny_dataset.meta, tiny_config()
    lam = wavelength(300e3)
    assert lam == pytest.approx(0.019687, rel=1e-4)
    extent = cfg["sample"]["cell"]
    assert np.allclose(meta["reciprocal_sampling_invA"], 1 / extent)
    assert np.allclose(meta["angular_sampling_mrad"], 1e3 * lam / extent)
    diff = tiny_dataset.array("measurements/diffraction")
    n_scan = int(round(extent / cfg["scan"]["step"]))
    assert diff.shape[:3] == (2, n_scan, n_scan)
    k_edge = np.asarray(meta["angular_sampling_mrad"]) * (np.asarray(diff.shape[-2:]) // 2)
    over = k_edge - cfg["detector"]["max_angle"]  # abTEM keeps whole pixels past max_angle
    assert np.all((over >= 0) & (over < 2 * meta["angular_sampling_mrad"][0]))
    assert meta["energy_eV"] == 300e3 and meta["scan_step_A"] == [1.6, 1.6]
    pos = tiny_dataset.array("geometry/positions")
    assert pos.shape == (2, n_scan**2, 2) and np.allclose(np.diff(pos[0, :n_scan, 1]), 1.6)
    assert np.allclose(tiny_dataset.array("geometry/euler_deg")[:, 1], [-45, 45])


def test_tilting_changes_the_patterns(tiny_dataset):
    diff = tiny_dataset.array("measurements/diffraction")
    rel = np.abs(diff[0] - diff[1]).sum() / np.abs(diff[0]).sum()
    assert rel > 1e-3


def _centrosymmetric_particle(cell: float, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < 12:
        p = rng.uniform(-3.5, 3.5, 3)
        cand = [p, -p]
        far = all(np.linalg.norm(c - q) > 2.2 for c in cand for q in pts)
        if np.linalg.norm(2 * p) > 2.2 and far:
            pts += cand
    return Atoms(["Au"] * len(pts), positions=np.array(pts) + cell / 2, cell=[cell] * 3, pbc=True)


def test_180_degree_tilt_of_centrosymmetric_particle_mirrors_the_data():
    """R_y(180°) = inversion ∘ (y → -y); for a centrosymmetric specimen the data at 180° are the
    data at 0° with scan y and ky mirrored."""
    cfg = simulation_config(
        tiny_config(tilts={"angles": [0.0, 180.0]}, phonons={"num_configs": 0})
    )
    ts = simulate_tilt_series(_centrosymmetric_particle(12.8), cfg, progress=False)
    d0, d1 = ts.diffraction
    n, m = d0.shape[1], d0.shape[-1]
    mirrored = d0[:, (-np.arange(n)) % n][..., (-np.arange(m)) % m]
    scale = d1[..., 1:].max()
    assert np.abs(d1[..., 1:] - mirrored[..., 1:]).max() / scale < 1e-4
    assert np.abs(d1 - d0).max() / scale > 1e-2  # and the particle is not mirror symmetric


def test_rotation_convention():
    r = euler_matrix(0, 90, 0)
    assert np.allclose(r @ [1, 0, 0], [0, 0, -1])  # right-handed about +y: x → -z
    assert np.allclose(r @ [0, 0, 1], [1, 0, 0])
    rz = euler_matrix(0, 0, 90)
    assert np.allclose(rz @ [1, 0, 0], [0, 1, 0])
    out = transform_positions([[1.0, 2.0, 3.0]], (0, 180, 0), (1, 2, 3), shift=(0.5, -0.5))
    assert np.allclose(out, [[1.5, 1.5, 3.0]])


def test_noise_mean_is_dose_times_step_area(tiny_dataset):
    noise = NoiseConfig(dose=4e4, per="series", seed=7)
    counts = tiny_dataset.measurements(noise)
    clean = tiny_dataset.array("measurements/diffraction")
    electrons = electrons_per_position(noise, 2, (1.6, 1.6))
    assert electrons == pytest.approx(4e4 / 2 * 1.6**2)
    expected = clean.sum() * electrons
    assert abs(counts.sum() - expected) < 5 * np.sqrt(expected)
    assert np.all(counts == np.round(counts))
    per_tilt = tiny_dataset.measurements(NoiseConfig(dose=2e4, per="tilt", seed=7))
    assert np.array_equal(per_tilt, counts)  # the same dose said per tilt


def test_noise_seeds_and_half_sets(tiny_dataset):
    noise = NoiseConfig(dose=1e5, seed=11)
    a, b = tiny_dataset.measurements(noise), tiny_dataset.measurements(noise)
    assert np.array_equal(a, b)
    half = tiny_dataset.measurements(noise, realisation=1)
    assert not np.array_equal(a, half)
    assert np.array_equal(half, tiny_dataset.measurements(NoiseConfig(dose=1e5, seed=12)))
    clean = tiny_dataset.measurements(NoiseConfig())
    assert np.array_equal(clean, tiny_dataset.array("measurements/diffraction"))


def test_apply_dose_poisson_variance():
    lam = np.full(200_000, 0.3)
    c = apply_dose(lam, 10.0, seed=0)
    assert c.mean() == pytest.approx(3.0, abs=0.02) and c.var() == pytest.approx(3.0, rel=0.03)


def test_truth_potential_grid(tiny_dataset):
    pot = tiny_dataset.array("truth/potential")
    v = tiny_dataset.meta["voxel_size_A"]
    assert pot.shape == (32, 32, 32) and v == 0.4
    pos = tiny_dataset.array("truth/positions")
    origin = np.asarray(tiny_dataset.meta["origin_xyz_A"])
    # every atom sits on a local potential maximum of at least a few hundred V
    idx = np.rint((pos - origin) / v).astype(int)
    values = pot[idx[:, 2], idx[:, 0], idx[:, 1]]
    assert values.min() > 100 and values.min() > 20 * np.median(pot)


def test_antialias_limit_matches_abtem_rounding():
    # 128 px over 12.8 Å: abTEM keeps 2/3 of Nyquist rounded to its pixels: 43 px of 1/12.8 Å⁻¹
    expected = 43 / 12.8 * wavelength(300e3) * 1e3
    assert antialias_cutoff_mrad(300e3, 0.1, 12.8) == pytest.approx(expected)
