"""Alignment errors after removing the gauge (common shift and rotation)."""

import numpy as np
import pytest

from metrics.alignment import alignment_errors, euler_to_matrix, matrix_to_euler


def test_euler_convention() -> None:
    # Positive θ rotates right-handed about +y: +z goes to +x.
    r = euler_to_matrix([[0.0, 90.0, 0.0]])[0]
    np.testing.assert_allclose(r @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    # R = Rz(ψ) Ry(θ) Rx(φ): x-rotation applied first.
    rx, ry, rz = (euler_to_matrix([a])[0] for a in ([30.0, 0, 0], [0, 20.0, 0], [0, 0, 10.0]))
    np.testing.assert_allclose(euler_to_matrix([[30.0, 20.0, 10.0]])[0], rz @ ry @ rx)
    np.testing.assert_allclose(rx @ [0, 1, 0], [0, np.cos(np.pi / 6), np.sin(np.pi / 6)])
    angles = np.random.default_rng(0).uniform([-180, -89, -180], [180, 89, 180], (50, 3))
    np.testing.assert_allclose(matrix_to_euler(euler_to_matrix(angles)), angles, atol=1e-9)


def _series() -> tuple[np.ndarray, np.ndarray]:
    tilts = np.linspace(-60, 60, 8)
    angles = np.stack([np.zeros(8), tilts, np.zeros(8)], axis=1)
    shifts = np.random.default_rng(1).uniform(-3.4, 3.4, (8, 2))
    return angles, shifts


def test_gauge_removal_recovers_known_errors() -> None:
    angles, shifts = _series()
    rng = np.random.default_rng(2)
    # Known shift errors with zero mean, and a common (gauge) shift on top.
    shift_err = rng.normal(0, 0.3, shifts.shape)
    shift_err -= shift_err.mean(axis=0)
    gauge_shift = np.array([1.7, -0.9])
    # Known rotation errors in ± pairs about body x (φ) and about y (θ, φ = 0 here), so the
    # Euler error is exactly (δ, 0, 0) or (0, δ, 0); the pairs make the fitted gauge exact.
    deltas = np.array([0.8, -0.8, 0.5, -0.5, 1.1, -1.1, 0.3, -0.3])
    axis = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    err = np.zeros((8, 3))
    err[np.arange(8), axis] = deltas
    gauge = euler_to_matrix([[3.0, -7.0, 12.0]])[0]
    r_est = euler_to_matrix(angles) @ euler_to_matrix(err) @ gauge
    est_angles = matrix_to_euler(r_est)
    out = alignment_errors(shifts + gauge_shift + shift_err, est_angles, shifts, angles)
    np.testing.assert_allclose(out["gauge_shift_A"], gauge_shift, atol=1e-12)
    np.testing.assert_allclose(out["shift_error_A"], np.linalg.norm(shift_err, axis=1), atol=1e-12)
    np.testing.assert_allclose(out["gauge_rotation"], gauge, atol=1e-12)
    np.testing.assert_allclose(out["angle_error_deg"], err, atol=1e-9)
    np.testing.assert_allclose(out["rotation_error_deg"], np.abs(deltas), atol=1e-9)
    assert out["shift_error_max_A"] == pytest.approx(np.linalg.norm(shift_err, axis=1).max())


def test_without_gauge_removal_the_gauge_counts_as_error() -> None:
    angles, shifts = _series()
    out = alignment_errors(shifts + [1.0, 0.0], angles, shifts, angles, remove_shift=False)
    np.testing.assert_allclose(out["shift_error_A"], 1.0)
    perfect = alignment_errors(shifts + [1.0, 0.0], angles, shifts, angles)
    np.testing.assert_allclose(perfect["shift_error_A"], 0.0, atol=1e-12)
    np.testing.assert_allclose(perfect["rotation_error_deg"], 0.0, atol=1e-9)


def test_bad_shapes() -> None:
    angles, shifts = _series()
    with pytest.raises(ValueError, match=r"true_angles_deg must have shape \[8, 3\]"):
        alignment_errors(shifts, angles, shifts, angles[:-1])
