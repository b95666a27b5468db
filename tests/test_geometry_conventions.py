"""The three Euler-matrix implementations of ``R = R_z(psi) R_y(theta) R_x(phi)`` agree with
each other and with the convention (right-handed, active, acting on column vectors
``(x, y, z)``), and ``metrics.alignment.matrix_to_euler`` inverts them.

* ``simulate.geometry.euler_matrix``: numpy, degrees, one rotation;
* ``reconstruct.tomography.euler_matrix``: torch, radians, batched;
* ``metrics.alignment.euler_to_matrix``: numpy, degrees, batched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from metrics.alignment import euler_to_matrix, matrix_to_euler
from reconstruct.tomography import euler_matrix as torch_euler_matrix
from simulate.geometry import euler_matrix as simulate_euler_matrix

Matrices = Callable[[np.ndarray], np.ndarray]


def _simulate(angles_deg: np.ndarray) -> np.ndarray:
    return np.stack([simulate_euler_matrix(*a) for a in angles_deg])


def _reconstruct(angles_deg: np.ndarray) -> np.ndarray:
    a = torch.as_tensor(np.deg2rad(angles_deg), dtype=torch.float64)
    return torch_euler_matrix(a[:, 0], a[:, 1], a[:, 2]).numpy()


def _metrics(angles_deg: np.ndarray) -> np.ndarray:
    return euler_to_matrix(angles_deg)


#: each maps Euler angles ``[T, 3]`` (phi, theta, psi) [degrees] to matrices ``[T, 3, 3]``
IMPLEMENTATIONS: dict[str, Matrices] = {
    "simulate": _simulate,
    "reconstruct": _reconstruct,
    "metrics": _metrics,
}
TOL = 1e-12


def random_angles(n: int = 64, theta_max: float = 180.0, seed: int = 0) -> np.ndarray:
    """Angles ``[n, 3]`` [deg]: phi and psi uniform in (-180, 180), theta in +-theta_max."""
    rng = np.random.default_rng(seed)
    return rng.uniform([-180.0, -theta_max, -180.0], [180.0, theta_max, 180.0], (n, 3))


def single_axis(axis: int, values: np.ndarray) -> np.ndarray:
    """Angles ``[n, 3]`` that are zero except ``axis`` (0: phi, 1: theta, 2: psi)."""
    angles = np.zeros((len(values), 3))
    angles[:, axis] = values
    return angles


@pytest.mark.parametrize("name", ["reconstruct", "metrics"])
def test_implementations_agree(name: str) -> None:
    """Every implementation equals the simulation's on random angles (float64)."""
    angles = random_angles()
    np.testing.assert_allclose(IMPLEMENTATIONS[name](angles), _simulate(angles), rtol=0, atol=TOL)


E_X, E_Y, E_Z = np.eye(3)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_single_axis_rotations_are_right_handed(name: str) -> None:
    """``R_x(phi)``: y -> (0, cos, sin); ``R_y(theta)``: z -> (sin, 0, cos), x -> (cos, 0, -sin);
    ``R_z(psi)``: x -> (cos, sin, 0); each fixes its own axis."""
    a = random_angles(16, seed=1)[:, 0]
    c, s, o = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a)), np.zeros_like(a)
    matrices = IMPLEMENTATIONS[name]
    rx, ry, rz = (matrices(single_axis(k, a)) for k in range(3))
    expected = [
        (rx, E_X, np.stack([o + 1, o, o], -1)),
        (rx, E_Y, np.stack([o, c, s], -1)),
        (rx, E_Z, np.stack([o, -s, c], -1)),
        (ry, E_X, np.stack([c, o, -s], -1)),
        (ry, E_Y, np.stack([o, o + 1, o], -1)),
        (ry, E_Z, np.stack([s, o, c], -1)),
        (rz, E_X, np.stack([c, s, o], -1)),
        (rz, E_Y, np.stack([-s, c, o], -1)),
        (rz, E_Z, np.stack([o, o, o + 1], -1)),
    ]
    for r, v, image in expected:
        np.testing.assert_allclose(r @ v, image, rtol=0, atol=TOL)
    # +90 degrees about +y takes +z to +x (the stage tilt convention)
    np.testing.assert_allclose(matrices(single_axis(1, np.array([90.0])))[0] @ E_Z, E_X,
                               rtol=0, atol=TOL)  # fmt: skip


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_composition_order_and_orthogonality(name: str) -> None:
    """``R(phi, theta, psi) = R_z(psi) R_y(theta) R_x(phi)`` (x first), a proper rotation."""
    angles = random_angles(seed=2)
    matrices = IMPLEMENTATIONS[name]
    rx, ry, rz = (matrices(single_axis(k, angles[:, k])) for k in range(3))
    r = matrices(angles)
    np.testing.assert_allclose(r, rz @ ry @ rx, rtol=0, atol=TOL)
    assert np.abs(r - rx @ ry @ rz).max() > 0.1  # the order matters for these angles
    np.testing.assert_allclose(r.transpose(0, 2, 1) @ r, np.broadcast_to(np.eye(3), r.shape),
                               rtol=0, atol=TOL)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(r), 1.0, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_matrix_to_euler_inverts(name: str) -> None:
    """For theta in (-90, 90) deg the angles come back; outside it the matrix does."""
    angles = random_angles(theta_max=89.0, seed=3)
    angles[:3, 1] = [-89.99, 0.0, 89.99]  # near the gimbal lock and at zero tilt
    matrices = IMPLEMENTATIONS[name]
    np.testing.assert_allclose(matrix_to_euler(matrices(angles)), angles, rtol=0, atol=1e-8)
    wide = random_angles(theta_max=180.0, seed=4)
    back = matrix_to_euler(matrices(wide))
    assert np.all(np.abs(back[:, 1]) <= 90.0)
    np.testing.assert_allclose(matrices(back), matrices(wide), rtol=0, atol=TOL)
