"""Tomography geometry, binning, HAADF depth-dependent interaction and Gaussian atoms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reconstruct import (
    DepthDependentInteraction,
    GaussianAtoms,
    TiltSeriesGeometry,
    bin_slices,
    ddi_forward,
    depth_probe_kernels,
    euler_matrix,
    project,
    render_gaussian_slices,
    rotate_volume,
    transform_atoms,
)

F64 = torch.float64


def explicit_matrix(phi: float, theta: float, psi: float) -> np.ndarray:
    c, s = math.cos, math.sin
    rx = np.array([[1, 0, 0], [0, c(phi), -s(phi)], [0, s(phi), c(phi)]])
    ry = np.array([[c(theta), 0, s(theta)], [0, 1, 0], [-s(theta), 0, c(theta)]])
    rz = np.array([[c(psi), -s(psi), 0], [s(psi), c(psi), 0], [0, 0, 1]])
    return rz @ ry @ rx


ANGLES = [(0.1, -0.7, 0.3), (0.0, 0.5, 0.0), (-1.2, 2.0, 0.9)]


@pytest.mark.parametrize("phi,theta,psi", ANGLES)
def test_euler_matrix_matches_explicit_formula_and_simulation(phi, theta, psi):
    ours = euler_matrix(*(torch.tensor(a, dtype=F64) for a in (phi, theta, psi))).numpy()
    np.testing.assert_allclose(ours, explicit_matrix(phi, theta, psi), atol=1e-14)
    geometry = pytest.importorskip("simulate.geometry")
    reference = geometry.euler_matrix(*np.rad2deg([phi, theta, psi]))
    np.testing.assert_allclose(ours, reference, atol=1e-14)


def test_positive_theta_is_right_handed_about_y():
    r = euler_matrix(*(torch.tensor(a, dtype=F64) for a in (0.0, math.pi / 2, 0.0)))
    # right-handed about +y: z -> x, x -> -z
    np.testing.assert_allclose(r @ torch.tensor([0.0, 0, 1], dtype=F64), [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(r @ torch.tensor([1.0, 0, 0], dtype=F64), [0, 0, -1], atol=1e-15)


def blob(shape, centre, width=1.5, dtype=F64):
    z, x, y = torch.meshgrid(*(torch.arange(n, dtype=dtype) for n in shape), indexing="ij")
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    return torch.exp(-r2 / (2 * width**2))


def centre_of_mass(volume):
    z, x, y = torch.meshgrid(*(torch.arange(n, dtype=volume.dtype) for n in volume.shape),
                             indexing="ij")  # fmt: skip
    w = volume / volume.sum()
    return torch.stack([(w * x).sum(), (w * y).sum(), (w * z).sum()])


def rot(phi, theta, psi):
    a = torch.tensor([[phi, theta, psi]], dtype=F64)
    return euler_matrix(a[:, 0], a[:, 1], a[:, 2])


@pytest.mark.parametrize("phi,theta,psi", ANGLES)
def test_rotation_moves_specimen_points_by_R_about_the_centre(phi, theta, psi):
    """Checks grid_sample's (x, y, z) ordering against our [z, x, y] array order."""
    shape = (21, 23, 25)  # (Z, X, Y)
    centre = torch.tensor([(23 - 1) / 2, (25 - 1) / 2, (21 - 1) / 2], dtype=F64)  # (x, y, z)
    point = centre + torch.tensor([3.0, -2.0, 4.0], dtype=F64)
    volume = blob(shape, point)
    shift = torch.tensor([[0.7, -1.3]], dtype=F64)
    rotated = rotate_volume(volume, rot(phi, theta, psi), shift)[0]
    expected = rot(phi, theta, psi)[0] @ (point - centre) + centre
    expected[:2] += shift[0]
    torch.testing.assert_close(centre_of_mass(rotated), expected, atol=2e-2, rtol=0)


def test_rotation_round_trip_is_close_to_identity():
    shape = (24, 24, 24)
    volume = blob(shape, (10.0, 13.0, 12.5), width=3.0) + blob(shape, (14.0, 9.0, 11.0), 2.5)
    forward = rotate_volume(volume, rot(0.2, 0.6, -0.4))[0]
    back = rotate_volume(forward, rot(0.2, 0.6, -0.4).transpose(-1, -2))[0]
    error = (back - volume).norm() / volume.norm()
    assert error < 0.05  # two trilinear interpolations of a smooth volume


def test_rotation_by_90_degrees_permutes_axes_exactly():
    volume = torch.rand(9, 9, 9, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = rotate_volume(volume, rot(0.0, math.pi / 2, 0.0))[0]
    # R_y(90): out(x, y, z) = in(c - (z - c), y, c + (x - c)), i.e. out[k, i, j] = in[i, N-1-k, j]
    expected = volume.permute(1, 0, 2).flip(0)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    out_z = rotate_volume(volume, rot(0.0, 0.0, math.pi / 2))[0]
    # R_z(90): (x, y) -> (-y, x): out[k, i, j] = in[k, j, N-1-i]
    torch.testing.assert_close(out_z, volume.transpose(1, 2).flip(1), atol=1e-12, rtol=0)
    identity = rotate_volume(volume, rot(0.0, 0.0, 0.0))[0]
    torch.testing.assert_close(identity, volume, atol=1e-12, rtol=0)


def test_binning_and_projection_conserve_the_integral():
    volume = torch.rand(12, 5, 6, dtype=F64)
    slices = bin_slices(volume, 4, 0.5)
    assert slices.shape == (4, 5, 6)
    torch.testing.assert_close(slices.sum(0), project(volume, 0.5))
    torch.testing.assert_close(slices[1], volume[3:6].sum(0) * 0.5)
    with pytest.raises(ValueError):
        bin_slices(volume, 5, 0.5)


def test_tilt_series_geometry_projects_like_rotate_then_sum():
    geometry = TiltSeriesGeometry(torch.tensor([[0.0, 0.3, 0.1], [0.05, -0.4, 0.0]], dtype=F64),
                                  voxel=(0.5, 0.5, 0.5))  # fmt: skip
    volume = blob((10, 11, 12), (5.0, 6.0, 4.0), dtype=F64)
    proj = geometry.project(volume)
    torch.testing.assert_close(proj, geometry(volume).sum(1) * 0.5)
    # the blob stays inside the volume, so the projection keeps its integral
    np.testing.assert_allclose(float(proj[0].detach().sum()), float(volume.sum() * 0.5), rtol=1e-2)


def test_depth_probe_kernels_and_ddi_modes():
    depths = torch.tensor([0.0, 20.0, 40.0], dtype=F64)
    # defocus = -C10 = 20 Å: the focus lies 20 Å below the entrance plane (CONVENTIONS.md)
    kernels = depth_probe_kernels((32, 32), (0.3, 0.3), 300e3, 0.025, depths, {"defocus": 20.0})
    torch.testing.assert_close(kernels.sum((-2, -1)), torch.ones(3, dtype=F64))
    # the probe spreads (its second moment grows) away from its focus at z = 20 Å
    r2 = torch.fft.fftfreq(32, d=1 / 32, dtype=F64) ** 2
    spread = (kernels * (r2[:, None] + r2[None, :])).sum((-2, -1))
    assert spread[1] < spread[0] and spread[1] < spread[2]
    slices = torch.rand(2, 3, 32, 32, dtype=F64)
    direct = DepthDependentInteraction("direct")(slices)
    torch.testing.assert_close(direct, slices.sum(1))
    delta = torch.zeros(3, 32, 32, dtype=F64)
    delta[:, 0, 0] = 1.0
    torch.testing.assert_close(ddi_forward(slices, delta), direct)
    rigid = DepthDependentInteraction("rigid", kernels)
    adaptive = DepthDependentInteraction("adaptive", kernels)
    torch.testing.assert_close(rigid(slices), adaptive(slices))
    assert not list(rigid.parameters()) and list(adaptive.parameters())
    # a convolution with a normalised kernel conserves the total intensity
    torch.testing.assert_close(rigid(slices).sum((-2, -1)), direct.sum((-2, -1)))


def test_gaussian_atoms_render_and_rotate_like_simulation():
    positions = torch.tensor([[4.0, 5.0, 1.0], [6.5, 3.2, 4.9], [3.3, 6.1, 8.2]], dtype=F64)
    heights = torch.tensor([2.0, 1.0, 3.0], dtype=F64)
    widths = torch.tensor([0.5, 0.4, 0.6], dtype=F64)
    lab = positions[None]
    slices = render_gaussian_slices(lab, heights, widths, (40, 40), (0.25, 0.25), 3, 3.0, 4.5)
    assert slices.shape == (1, 3, 40, 40)
    # slice k holds atoms with depth in [k*3, (k+1)*3) Å; integrals are H pi B
    integrals = slices.sum((-2, -1))[0] * 0.25**2
    expected = heights * math.pi * widths
    torch.testing.assert_close(integrals, expected, rtol=1e-6, atol=0)
    peak = torch.nonzero(slices[0, 1] == slices[0, 1].max())[0].to(F64) * 0.25
    torch.testing.assert_close(peak, torch.tensor([6.5, 3.25], dtype=F64), atol=0.13, rtol=0)
    geometry = pytest.importorskip("simulate.geometry")
    angles = torch.tensor([[0.1, 0.4, -0.2]], dtype=F64)
    centre = torch.tensor([5.0, 5.0, 4.5], dtype=F64)
    shifts = torch.tensor([[0.3, -0.4]], dtype=F64)
    ours = transform_atoms(positions, euler_matrix(*angles.T), shifts, centre)[0]
    reference = geometry.transform_positions(
        positions.numpy(), np.rad2deg(angles[0].numpy()), centre.numpy(), shifts[0].numpy()
    )
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-12)
    atoms = GaussianAtoms(positions, heights, widths)
    out = atoms(angles, shifts, centre, (40, 40), (0.25, 0.25), 3, 3.0)
    assert out.shape == (1, 3, 40, 40)
