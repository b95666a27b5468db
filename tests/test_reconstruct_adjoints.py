"""Adjoint tests ``<A x, y> = <x, A* y>`` for every linear operator of the layer."""

from __future__ import annotations

import math

import pytest
import torch

from reconstruct import (
    bandlimit,
    bin_slices,
    bin_slices_adjoint,
    crop_center,
    crop_center_adjoint,
    ddi_adjoint,
    ddi_forward,
    euler_matrix,
    extract_patches,
    extract_patches_adjoint,
    fourier_shift,
    project,
    project_adjoint,
    propagate,
    rotate_volume,
    rotate_volume_adjoint,
)
from reconstruct.propagation import antialias_aperture

F64, C128 = torch.float64, torch.complex128


def randn(*shape, dtype=F64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum() if a.is_complex() else (a * b).sum()


def assert_adjoint(forward, adjoint, x, y):
    lhs, rhs = inner(forward(x), y), inner(x, adjoint(y))
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10), (lhs, rhs)


@pytest.mark.parametrize("dtype", [F64, C128])
def test_patch_extraction_adjoint(dtype):
    corners = torch.tensor([[0, 0], [9, 3], [-3, 11], [5, 5]])  # incl. wrap-around and overlap
    obj_shape = (12, 14)
    x = randn(2, 3, *obj_shape, dtype=dtype)
    y = randn(4, 2, 3, 6, 5, dtype=dtype, seed=1)
    assert_adjoint(
        lambda o: extract_patches(o, corners, (6, 5)),
        lambda p: extract_patches_adjoint(p, corners, obj_shape),
        x,
        y,
    )


@pytest.mark.parametrize("patch", [(4, 5), (11, 3)])
def test_extract_patches_are_periodic_crops(patch):
    """Each patch equals the object rolled to its corner and cropped (wrap-around at every
    edge, corners negative or beyond the object; a patch taller than the object wraps twice)."""
    obj = randn(2, 9, 7, dtype=torch.complex64)
    corners = torch.tensor([[0, 0], [7, 5], [-3, 2], [12, -9], [4, 3]])
    got = extract_patches(obj, corners, patch)
    for b, (c0, c1) in enumerate(corners.tolist()):
        rows = torch.arange(c0, c0 + patch[0]) % 9
        cols = torch.arange(c1, c1 + patch[1]) % 7
        assert torch.equal(got[b], obj[:, rows][:, :, cols])


def test_binning_adjoint():
    x, y = randn(2, 12, 4, 5), randn(2, 4, 4, 5, seed=1)
    assert_adjoint(lambda v: bin_slices(v, 4, 0.7), lambda s: bin_slices_adjoint(s, 12, 0.7), x, y)


def test_projector_adjoint():
    x, y = randn(3, 7, 4, 5), randn(3, 4, 5, seed=1)
    assert_adjoint(lambda v: project(v, 0.4), lambda p: project_adjoint(p, 7, 0.4), x, y)


def test_rotation_adjoint_and_tomographic_projector_adjoint():
    angles = torch.tensor([[0.1, 0.5, -0.2], [0.0, -0.9, 0.3]], dtype=F64)
    rotation = euler_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    shifts = torch.tensor([[0.4, -0.3], [1.1, 0.2]], dtype=F64)
    voxel = (0.8, 1.0, 1.2)
    x, y = randn(6, 7, 8), randn(2, 6, 7, 8, seed=1)
    assert_adjoint(
        lambda v: rotate_volume(v, rotation, shifts, voxel),
        lambda r: rotate_volume_adjoint(r, rotation, shifts, voxel),
        x,
        y,
    )
    # the linear tomographic projector (rotate, then sum along the beam) and its adjoint
    p = randn(2, 7, 8, seed=2)
    assert_adjoint(
        lambda v: project(rotate_volume(v, rotation, shifts, voxel), voxel[0]),
        lambda q: rotate_volume_adjoint(project_adjoint(q, 6, voxel[0]), rotation, shifts, voxel),
        x,
        p,
    )


def test_detector_crop_adjoint():
    x, y = randn(3, 16, 15), randn(3, 9, 8, seed=1)
    assert_adjoint(
        lambda i: crop_center(i, (9, 8)), lambda c: crop_center_adjoint(c, (16, 15)), x, y
    )


def test_ddi_adjoint():
    kernels = randn(3, 8, 8, seed=2).abs()
    x, y = randn(2, 3, 8, 8), randn(2, 8, 8, seed=1)
    assert_adjoint(lambda s: ddi_forward(s, kernels), lambda i: ddi_adjoint(i, kernels, 3), x, y)
    assert_adjoint(lambda s: ddi_forward(s, None), lambda i: ddi_adjoint(i, None, 3), x, y)


def test_fourier_shift_propagate_and_bandlimit_adjoints():
    shifts = torch.tensor([[0.3, -1.7], [2.25, 0.5]], dtype=F64)
    x, y = randn(8, 9, dtype=C128), randn(2, 8, 9, dtype=C128, seed=1)
    assert_adjoint(
        lambda w: fourier_shift(w, shifts),
        # out[b, i] = shift(v_i, -s_b); the adjoint sums the diagonal b = i
        lambda v: fourier_shift(v, -shifts).diagonal(dim1=0, dim2=1).sum(-1),
        x,
        y,
    )
    phase = randn(8, 9, seed=3)
    prop = torch.polar(torch.ones_like(phase), phase)
    assert_adjoint(lambda w: propagate(w, prop), lambda v: propagate(v, prop.conj()), x, y[0])
    mask = antialias_aperture((8, 9), (0.3, 0.3), dtype=F64)
    assert_adjoint(lambda w: bandlimit(w, mask), lambda v: bandlimit(v, mask), x, y[0])
    assert math.isclose(float(mask.max()), 1.0)
