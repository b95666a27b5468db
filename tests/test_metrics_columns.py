"""R-factor, SrTiO3 column displacements, column COM spread, tilt and thickness errors."""

import numpy as np
import pytest

from metrics.columns import (
    assign_columns,
    column_com,
    column_displacements,
    columns_from_atoms,
    r_factor,
    srtio3_displacements,
    thickness_error_A,
    tilt_error_mrad,
    vibration_spread,
)
from metrics.synthetic import render_gaussians, srtio3_columns
from metrics.tracing import find_columns

A = 3.905


def test_r_factor_identical_and_known_perturbation() -> None:
    rng = np.random.default_rng(0)
    obs = rng.uniform(0.5, 2.0, (3, 16, 16))
    assert r_factor(obs, obs) == 0.0
    assert r_factor(obs, 1.07 * obs) == pytest.approx(0.07, rel=1e-12)
    delta = rng.normal(0, 0.1, obs.shape)
    assert r_factor(obs, obs + delta) == pytest.approx(np.abs(delta).sum() / obs.sum())
    signed = obs - 1.2  # |I_obs| in the denominator
    expected = 0.01 * signed.size / np.abs(signed).sum()
    assert r_factor(signed, signed + 0.01) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        r_factor(obs, obs[0])
    with pytest.raises(ValueError, match="all zeros"):
        r_factor(np.zeros(4), np.ones(4))


def test_srtio3_tio_offsets_recovered_to_0p1_pm() -> None:
    rng = np.random.default_rng(1)
    p = 0.1  # Å per pixel
    sites = srtio3_columns((4, 4), A, origin=(1.0 + rng.uniform(0, p), 1.0 + rng.uniform(0, p)))
    offsets = rng.uniform(-0.06, 0.06, sites["TiO"].shape)  # up to 6 pm
    pos = np.concatenate([sites["Sr"], sites["TiO"] + offsets, sites["O"]])
    heights = np.repeat([1.0, 0.8, 0.3], [len(sites["Sr"]), len(sites["TiO"]), len(sites["O"])])
    n = int((4 * A + 2.0) / p) + 1
    phase = render_gaussians(pos, heights, 0.3, (n, n), p)
    found = find_columns(phase, p, threshold=0.1)
    assert len(found) == len(pos)
    lab = assign_columns(found.positions, sites, r_match=0.5)
    d = srtio3_displacements(lab["TiO"], lab["Sr"], lab["O"], A)
    assert np.abs(d["d_sr_tio_A"] - offsets).max() * 100 < 0.1  # pm
    assert np.abs(d["d_o_tio_A"] - offsets).max() * 100 < 0.1
    np.testing.assert_allclose(d["d_sr_tio_pm"], np.linalg.norm(offsets, axis=1) * 100, atol=0.1)
    # Perfect lattice: displacement 0 (the truth in cubic SrTiO3).
    d0 = srtio3_displacements(sites["TiO"], sites["Sr"], sites["O"], A)
    assert d0["d_sr_tio_mean_pm"] < 1e-9 and d0["d_o_tio_mean_pm"] < 1e-9


def test_displacement_is_nan_without_four_neighbours() -> None:
    sites = srtio3_columns((2, 1), A)
    outside = np.array([[10 * A, 10 * A]])
    d = column_displacements(np.concatenate([sites["TiO"], outside]), sites["Sr"], 4, A)
    assert np.all(np.isfinite(d[:2])) and np.all(np.isnan(d[2]))


def _column_states(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase of S states with 4 Gaussian columns shifted by known per-state offsets."""
    rng = np.random.default_rng(seed)
    cols = np.array([[2.0, 2.0], [4.5, 2.1], [2.2, 4.6], [4.7, 4.4]])
    shifts = rng.normal(0, 0.08, (10, len(cols), 2))
    phases = np.stack(
        [render_gaussians(cols + s, 1.0, 0.25, (70, 70), 0.1, cutoff=8) for s in shifts]
    )
    return cols, shifts, phases


def test_column_com_recovers_state_positions_and_spread() -> None:
    cols, shifts, phases = _column_states(2)
    com = column_com(phases, cols, 0.1, radius=1.2)
    np.testing.assert_allclose(com, cols + shifts, atol=2e-4)  # 0.02 pm
    spread = vibration_spread(com, cols + shifts)
    np.testing.assert_allclose(spread["std_A"], np.std(shifts, axis=0), atol=2e-4)
    np.testing.assert_allclose(spread["ratio"], 1.0, atol=5e-3)


def test_true_column_positions_from_md_snapshots() -> None:
    rng = np.random.default_rng(3)
    cols = np.array([[0.0, 0.0], [3.0, 0.0]])
    n_t, per_col = 6, 5
    base = np.concatenate([np.c_[np.repeat(cols[c:c + 1], per_col, 0), np.arange(per_col) * 2.0]
                           for c in range(2)])
    snaps = base[None] + np.concatenate([rng.normal(0, 0.1, (n_t, len(base), 2)),
                                         np.zeros((n_t, len(base), 1))], axis=2)
    got = columns_from_atoms(snaps, cols, radius=0.8)
    expected = np.stack([snaps[:, :per_col, :2].mean(1), snaps[:, per_col:, :2].mean(1)], 1)
    np.testing.assert_allclose(got, expected)
    spread = vibration_spread(got)
    np.testing.assert_allclose(spread["std_A"], expected.std(axis=0))


def test_tilt_and_thickness_errors() -> None:
    e = tilt_error_mrad([3.0, 4.0], [0.0, 0.0])
    assert e["magnitude_mrad"] == 5.0
    e = thickness_error_A(190.0, 200.0)
    assert e["error_A"] == -10.0 and e["relative"] == -0.05
    with pytest.raises(ValueError, match="θx, θy"):
        tilt_error_mrad([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
