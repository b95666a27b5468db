"""Experimental imperfections recorded as truth, ADF-only / PRISM series, Z contrast."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from conftest import tiny_config

from simulate.config import TiltConfig
from simulate.geometry import transform_positions
from simulate.models import build_model
from simulate.pipeline import load_dataset, run_simulation, simulation_config
from simulate.tiltseries import resolve_tilts, simulate_tilt, simulate_tilt_series, source_blur


def test_shifts_and_euler_errors_are_recorded_and_seeded():
    cfg = TiltConfig(
        range=[-45.0, 45.0], count=7, endpoint=True, shift_max=3.4, euler_error=0.5, seed=5
    )
    true, nominal, shifts = resolve_tilts(cfg)
    again = resolve_tilts(cfg)
    assert all(np.array_equal(a, b) for a, b in zip((true, nominal, shifts), again, strict=True))
    assert np.allclose(nominal[:, 1], np.linspace(-45, 45, 7)) and np.all(nominal[:, [0, 2]] == 0)
    assert np.abs(shifts).max() <= 3.4 and np.abs(shifts).max() > 1.0
    err = true - nominal
    assert 0.1 < err.std() < 1.5
    other = resolve_tilts(TiltConfig(**{**cfg.__dict__, "seed": 6}))
    assert not np.allclose(other[2], shifts)


def test_jitter_and_shift_reach_the_data(tmp_path):
    over = {
        "tilts": {"angles": [30.0], "shift_max": 2.0, "seed": 1},
        "scan": {"jitter": 0.1, "seed": 2},
        "phonons": {"num_configs": 0},
    }
    ds = load_dataset(tiny_config(**over), tmp_path)
    true, nominal = ds.array("geometry/positions"), ds.array("geometry/positions_nominal")
    assert np.std(true - nominal) == pytest.approx(0.1, rel=0.3)
    tau = ds.array("geometry/shifts")[0]
    assert np.abs(tau).max() > 0.2
    # the shift is an image-plane translation after the rotation: the same data come from the
    # rotated atoms moved by tau by hand, scanned at the same (jittered) positions
    cfg = simulation_config(tiny_config(**over))
    atoms = build_model(cfg.sample)
    centre = np.diag(atoms.cell.array) / 2
    moved = atoms.copy()
    moved.positions = transform_positions(atoms.positions, (0, 30, 0), centre, tau)
    plain = dataclasses.replace(cfg, tilts=TiltConfig(angles=[0.0]))
    diff, _, _ = simulate_tilt(moved, plain, np.zeros(3), np.zeros(2), true[0], seed=0)
    stored = ds.array("measurements/diffraction")[0].reshape(diff.shape)
    assert np.abs(stored - diff).max() / diff.max() < 1e-5
    clean, _, _ = simulate_tilt(moved, plain, np.zeros(3), np.zeros(2), nominal[0], seed=0)
    assert np.abs(stored - clean).max() / diff.max() > 1e-3  # jitter changed the data


def test_source_blur_preserves_counts_and_lowers_fringe_contrast():
    rng = np.random.default_rng(0)
    data = rng.random((1, 16, 16, 5, 5)).astype(np.float32)
    blurred = source_blur(data, fwhm=1.0, step=0.4)
    assert blurred.sum() == pytest.approx(data.sum(), rel=1e-5)
    assert blurred.std(axis=(1, 2)).mean() < 0.5 * data.std(axis=(1, 2)).mean()
    assert np.array_equal(source_blur(data, 0.0, 0.4), data)


def test_source_size_lowers_interference_contrast_in_simulation(tmp_path):
    base = {"tilts": {"angles": [0.0]}, "phonons": {"num_configs": 0}, "scan": {"step": 0.4}}
    sharp = load_dataset(tiny_config(**base), tmp_path)
    soft = load_dataset(tiny_config(**base, microscope={"source_size": 0.8}), tmp_path)
    # the bright-field disc's interference pattern varies with probe position: its variance
    # over the scan drops when neighbouring positions are averaged incoherently
    a, b = (d.array("measurements/diffraction")[0] for d in (sharp, soft))
    centre = a.shape[-1] // 2
    disc = (slice(None), slice(None), slice(centre - 5, centre + 6), slice(centre - 5, centre + 6))
    assert b[disc].std(axis=(0, 1)).mean() < 0.8 * a[disc].std(axis=(0, 1)).mean()


def test_adf_only_prism_matches_multislice():
    over = {
        "detector": {"pixelated": False, "adf": True, "adf_inner": 30.0, "adf_outer": 64.0},
        "tilts": {"angles": [10.0]},
        "phonons": {"num_configs": 0},
        "scan": {"step": 3.2},
    }
    ms, _ = run_simulation(simulation_config(tiny_config(**over)), progress=False)
    pr, _ = run_simulation(
        simulation_config(tiny_config(**over, method={"name": "prism"})), progress=False
    )
    assert ms.diffraction is None and pr.diffraction is None
    assert np.abs(pr.haadf - ms.haadf).max() / ms.haadf.max() < 1e-4


def test_haadf_rises_with_atomic_number():
    cell = 12.8
    atoms = Atoms(
        ["Pt", "Al", "O"],
        positions=[(3.2, 6.4, 6.4), (6.4, 6.4, 6.4), (9.6, 6.4, 6.4)],
        cell=[cell] * 3,
        pbc=True,
    )
    cfg = simulation_config(
        tiny_config(
            detector={"pixelated": False, "adf": True, "adf_inner": 40.0, "adf_outer": 64.0},
            tilts={"angles": [0.0]},
            phonons={"num_configs": 0},
            scan={"start": [0.0, 6.4], "end": [12.8, 6.8], "step": 0.4},
        )
    )
    ts = simulate_tilt_series(atoms, cfg, progress=False)
    line = ts.haadf[0, :, 0]
    x = ts.positions[0, :, 0]
    peak = {z: line[np.argmin(np.abs(x - px))] for z, px in ((78, 3.2), (13, 6.4), (8, 9.6))}
    assert peak[78] > 5 * peak[13] > 5 * peak[8] * 0.5
    assert peak[13] > peak[8]


def test_adf_recorded_in_focus_while_patterns_keep_their_defocus():
    """``detector.adf_defocus`` records the ADF line scan in its own (in-focus) scan: its atom
    peak is sharper than the one recorded with the 4D-STEM probe at -20 nm defocus, and the
    diffraction patterns are the same as without it."""
    atoms = Atoms(["Pt"], positions=[(6.4, 6.4, 6.4)], cell=[12.8] * 3, pbc=True)
    base = tiny_config(
        detector={"adf": True, "adf_inner": 40.0, "adf_outer": 64.0},
        tilts={"angles": [0.0]},
        phonons={"num_configs": 0},
        scan={"start": [0.0, 6.4], "end": [12.8, 6.8], "step": 0.4},
    )
    base["microscope"] = {"defocus": -200.0}
    same = simulate_tilt_series(atoms, simulation_config(base), progress=False)
    focus = tiny_config(**{k: v for k, v in base.items() if k in ("tilts", "phonons", "scan")},
                        detector={**base["detector"], "adf_defocus": 0.0})
    focus["microscope"] = {"defocus": -200.0}
    sharp = simulate_tilt_series(atoms, simulation_config(focus), progress=False)
    np.testing.assert_array_equal(sharp.diffraction, same.diffraction)
    contrast = [ts.haadf[0].max() / ts.haadf[0].mean() for ts in (sharp, same)]
    assert contrast[0] > 2 * contrast[1]
