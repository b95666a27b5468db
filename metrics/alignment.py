"""Tomographic alignment error after removing the global gauge (paper 000).

Euler angles are ``(φ, θ, ψ)`` in degrees, one row per tilt, with the rotation matrix
``R = R_z(ψ) R_y(θ) R_x(φ)`` acting on specimen coordinates (CONVENTIONS.md, Tomography
geometry); positive angles rotate right-handed about +x, +y (the stage tilt axis) and +z.

The gauge that a reconstruction cannot determine is (i) a common in-plane shift of all
projections, ``τ_j -> τ_j + c``, and (ii) a common rotation ``G`` of the specimen (the volume),
``R_j -> R_j G``. Both are fitted by least squares and removed: ``c`` is the mean of
``τ - τ_true`` and ``G`` the rotation closest to ``sum_j R_true,j^T R_j`` (orthogonal Procrustes
by SVD). A 3D translation of the volume, which shifts projection j by the in-plane part of
``R_j s``, is not part of this gauge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics.grid import ArrayLike, check_array


def euler_to_matrix(angles_deg: ArrayLike) -> np.ndarray:
    """Rotation matrices ``[T, 3, 3]`` from Euler angles ``[T, 3]`` (φ, θ, ψ) in degrees,
    ``R = R_z(ψ) R_y(θ) R_x(φ)``."""
    a = np.deg2rad(check_array("angles_deg", angles_deg, (1, 2)).reshape(-1, 3))
    cx, sx = np.cos(a[:, 0]), np.sin(a[:, 0])
    cy, sy = np.cos(a[:, 1]), np.sin(a[:, 1])
    cz, sz = np.cos(a[:, 2]), np.sin(a[:, 2])
    o, z = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([o, z, z, z, cx, -sx, z, sx, cx], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, z, sy, z, o, z, -sy, z, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cz, -sz, z, sz, cz, z, z, z, o], -1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def matrix_to_euler(matrices: ArrayLike) -> np.ndarray:
    """Euler angles ``[T, 3]`` (φ, θ, ψ) in degrees of rotation matrices ``[T, 3, 3]``
    (inverse of :func:`euler_to_matrix`, θ in [-90°, 90°])."""
    r = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    phi = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    theta = np.arctan2(-r[:, 2, 0], np.hypot(r[:, 0, 0], r[:, 1, 0]))
    psi = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.rad2deg(np.stack([phi, theta, psi], axis=1))


def _wrap_deg(x: np.ndarray) -> np.ndarray:
    """Wrap angles to [-180, 180) degrees."""
    return (x + 180.0) % 360.0 - 180.0


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation matrix closest (Frobenius) to ``m`` [3, 3]."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def alignment_errors(
    shifts: ArrayLike,
    angles_deg: ArrayLike,
    true_shifts: ArrayLike,
    true_angles_deg: ArrayLike,
    *,
    remove_shift: bool = True,
    remove_rotation: bool = True,
) -> dict[str, Any]:
    """Per-tilt alignment errors after removing the gauge (a common shift and rotation).

    Args:
        shifts: ``[T, 2]`` recovered in-plane shifts τ (x, y) in Å.
        angles_deg: ``[T, 3]`` recovered Euler angles (φ, θ, ψ) in degrees.
        true_shifts: ``[T, 2]`` true shifts in Å. true_angles_deg: ``[T, 3]`` true angles (°).
        remove_shift, remove_rotation: fit and remove each part of the gauge.

    Returns:
        dict with ``gauge_shift_A`` [2], ``gauge_rotation`` [3, 3] and ``gauge_rotation_deg``
        (its Euler angles), ``shift_error_A`` [T] (``|τ - c - τ_true|``), ``angle_error_deg``
        [T, 3] (Euler angle differences of ``R_j G^T`` and ``R_true,j``, wrapped to ±180°),
        ``rotation_error_deg`` [T] (angle of ``R_true,j^T R_j G^T``), and the mean, median and
        max of the shift and rotation errors.
    """
    tau = check_array("shifts", shifts, 2)
    tau_t = check_array("true_shifts", true_shifts, 2)
    ang = check_array("angles_deg", angles_deg, 2)
    ang_t = check_array("true_angles_deg", true_angles_deg, 2)
    n = tau.shape[0]
    for name, arr, cols in (("shifts", tau, 2), ("true_shifts", tau_t, 2),
                            ("angles_deg", ang, 3), ("true_angles_deg", ang_t, 3)):
        if arr.shape != (n, cols):
            raise ValueError(f"{name} must have shape [{n}, {cols}] (one row per tilt), "
                             f"got {arr.shape}")
    c = np.mean(tau - tau_t, axis=0) if remove_shift else np.zeros(2)
    shift_err = np.linalg.norm(tau - c - tau_t, axis=1)
    r, r_t = euler_to_matrix(ang), euler_to_matrix(ang_t)
    g = np.eye(3)
    if remove_rotation:
        g = _nearest_rotation(np.einsum("tji,tjk->ik", r_t, r))
    r_corr = r @ g.T
    angle_err = _wrap_deg(matrix_to_euler(r_corr) - ang_t)
    rel = np.einsum("tji,tjk->tik", r_t, r_corr)
    skew = rel - np.transpose(rel, (0, 2, 1))
    sin = 0.5 * np.linalg.norm(skew[:, [2, 0, 1], [1, 2, 0]], axis=1)
    rot_err = np.rad2deg(np.arctan2(sin, (np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0))
    return {
        "gauge_shift_A": c,
        "gauge_rotation": g,
        "gauge_rotation_deg": matrix_to_euler(g)[0],
        "shift_error_A": shift_err,
        "angle_error_deg": angle_err,
        "rotation_error_deg": rot_err,
        "shift_error_mean_A": float(shift_err.mean()),
        "shift_error_median_A": float(np.median(shift_err)),
        "shift_error_max_A": float(shift_err.max()),
        "rotation_error_mean_deg": float(rot_err.mean()),
        "rotation_error_max_deg": float(rot_err.max()),
    }
