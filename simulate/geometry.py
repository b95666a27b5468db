"""Tomographic geometry shared by simulation and reconstruction (CONVENTIONS.md, paper 000).

Per tilt j the rotation ``R_j = R_z(psi) @ R_y(theta) @ R_x(phi)`` acts on specimen coordinates
(x, y, z) about the volume centre; y is the stage tilt axis and positive theta rotates the
specimen right-handed about +y. After projection a shift ``tau = (tau_x, tau_y)`` in Å is applied
in the image plane. Angles here are in degrees (the config unit).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _rx(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def euler_matrix(phi: float, theta: float, psi: float) -> NDArray[np.float64]:
    """Rotation matrix ``R_z(psi) R_y(theta) R_x(phi)``; angles in degrees. Shape ``[3, 3]``."""
    p, t, s = np.deg2rad([phi, theta, psi])
    return _rz(s) @ _ry(t) @ _rx(p)


def transform_positions(
    positions: ArrayLike,
    euler_deg: ArrayLike,
    centre: ArrayLike,
    shift: ArrayLike = (0.0, 0.0),
) -> NDArray[np.float64]:
    """Rotate positions about ``centre`` and shift them in the image plane.

    Args:
        positions: ``[N, 3]`` (x, y, z) in Å, specimen frame at zero tilt.
        euler_deg: ``(phi, theta, psi)`` in degrees.
        centre: ``(x, y, z)`` rotation centre in Å (the volume centre).
        shift: ``(tau_x, tau_y)`` in Å, applied after rotation.

    Returns:
        ``[N, 3]`` positions in Å in the laboratory (beam) frame.
    """
    pos = np.asarray(positions, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    rot = euler_matrix(*np.asarray(euler_deg, dtype=np.float64))
    out = (pos - c) @ rot.T + c
    out[:, :2] += np.asarray(shift, dtype=np.float64)
    return out
