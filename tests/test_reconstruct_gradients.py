"""``torch.autograd.gradcheck`` (float64/complex128, tiny inputs) for every differentiable op."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from reconstruct import (
    DepthDependentInteraction,
    GaussianAtoms,
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    TiltSeriesGeometry,
    aberration_phase,
    amplitude_loss,
    bin_slices,
    crop_center,
    ddi_forward,
    euler_matrix,
    extract_patches,
    farfield_intensity,
    fourier_shift,
    fresnel_propagator,
    intensity_loss,
    multislice_forward,
    poisson_nll,
    probe_from_aberrations,
    project,
    render_gaussian_slices,
    rotate_volume,
    spatial_frequencies,
    transmission,
)

F64, C128 = torch.float64, torch.complex128
# fast_mode compares J v and u^T J for random u, v (PyTorch's "fast gradcheck"); the full
# Jacobian comparison of the end-to-end model runs under ``-m slow`` (test_full_jacobian_*).
FAST = True
ENERGY = 200e3
SAMPLING = (0.2, 0.2)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape, dtype=F64, seed=0, requires_grad=True):
    x = torch.randn(*shape, generator=gen(seed), dtype=dtype)
    return x.requires_grad_(requires_grad)


def check(fn, *inputs, fast: bool = FAST):
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


def test_aberration_phase_wrt_coefficients():
    kx, ky = spatial_frequencies((8, 8), SAMPLING, dtype=F64)
    alpha = torch.sqrt(kx**2 + ky**2) * 0.025
    phi = torch.atan2(ky.expand(8, 8), kx.expand(8, 8))
    coeffs = torch.tensor([-30.0, 5.0, 0.3, 40.0, 1.0, 2e3], dtype=F64, requires_grad=True)

    def fn(c):
        names = ["C10", "C12", "phi12", "C21", "phi21", "C30"]
        return aberration_phase(alpha, phi, 0.025, dict(zip(names, c, strict=True)))

    check(fn, coeffs)


def test_fresnel_propagator_wrt_thickness_and_tilt():
    kx, ky = spatial_frequencies((8, 8), SAMPLING, dtype=F64)
    dz = torch.tensor([2.0, 1.5], dtype=F64, requires_grad=True)
    tilt = torch.tensor([[3e-3, -2e-3], [1e-3, 4e-3], [0.0, 1e-2]], dtype=F64, requires_grad=True)
    check(lambda d, t: fresnel_propagator(kx, ky, 0.025, d, t[:, None, :]), dz, tilt)


def test_transmission_wrt_potential_and_absorption():
    check(lambda v, a: transmission(v, 7e-4, a), rand(2, 8, 8), rand(2, 8, 8, seed=1))


def test_fourier_shift_wrt_wave_and_positions():
    wave = rand(2, 8, 8, dtype=C128)
    shifts = torch.tensor([[0.3, -0.2], [0.1, 0.45]], dtype=F64, requires_grad=True)
    check(fourier_shift, wave, shifts)


def test_extract_patches_wrt_object():
    corners = torch.tensor([[0, 0], [5, 7], [-2, 3]])
    check(lambda o: extract_patches(o, corners, (4, 4)), rand(2, 8, 8, dtype=C128))
    # twice differentiable (the backward scatter is itself differentiable), also when a patch
    # is wider than the object and wraps more than once
    for shape in ((4, 4), (10, 3)):
        assert torch.autograd.gradgradcheck(
            lambda o, sh=shape: extract_patches(o, corners, sh), (rand(2, 8, 8, dtype=C128),)
        )


def test_multislice_forward_and_detection():
    probes = rand(3, 2, 8, 8, dtype=C128)
    t = rand(2, 3, 2, 8, 8, dtype=C128, seed=1)  # [S, B, O, M1, M2]
    props = rand(2, 8, 8, dtype=C128, seed=2)
    aperture = torch.rand(8, 8, generator=gen(3), dtype=F64)

    def fn(p, tt, pr):
        intensity = farfield_intensity(multislice_forward(p, tt, pr), aperture)
        return crop_center(intensity, (5, 5))

    check(fn, probes, t, props)


def tiny_model(per_position_tilt: bool = False) -> MultislicePtychography:
    shape, n_pos = (8, 8), 3
    probe = probe_from_aberrations(shape, SAMPLING, ENERGY, 0.03, {"C10": -20.0}, dtype=F64)
    potential = torch.rand(2, 2, 10, 10, generator=gen(4), dtype=F64) * 50
    tilt = torch.tensor([[2e-3, -1e-3]] * n_pos if per_position_tilt else [2e-3, -1e-3])
    model = MultislicePtychography(
        SlicedObject(potential, ENERGY, SAMPLING, absorption=True),
        MixedProbe(probe, n_modes=2),
        torch.tensor([[0.43, 0.61], [1.17, 0.88], [1.52, 1.31]], dtype=F64),
        Propagator(shape, SAMPLING, ENERGY, 1.5, tilt=tilt.to(F64), dtype=F64),
        (6, 6),
    )
    with torch.no_grad():
        model.object.absorption.uniform_(0, 5)
    return model.to(F64)


NAMES = ["object", "absorption", "probe", "occupations", "positions", "tilt", "thickness"]


@pytest.mark.parametrize("name", NAMES)
def test_ptychography_model_wrt_each_parameter(name, fast=True):
    model = tiny_model()
    params = {
        "object": model.object.potential,
        "absorption": model.object.absorption,
        "probe": model.probe.modes_real,
        "occupations": model.probe.occupation_logits,
        "positions": model.positions,
        "tilt": model.propagator.tilt,
        "thickness": model.propagator.slice_thickness,
    }
    target = params[name]
    for p in model.parameters():
        p.requires_grad_(False)
    idx = torch.arange(3)

    def fn(value):
        return torch.func.functional_call(model, {_path(model, target): value}, (idx,))

    check(fn, target.detach().clone().requires_grad_(True), fast=fast)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_jacobian_ptychography_model(name):
    test_ptychography_model_wrt_each_parameter(name, fast=False)


def _path(model, target) -> str:
    return next(n for n, p in model.named_parameters() if p is target)


def test_per_position_tilt_gradient():
    model = tiny_model(per_position_tilt=True)
    for p in model.parameters():
        p.requires_grad_(False)
    idx = torch.tensor([2, 0])

    def fn(tilt):
        return torch.func.functional_call(model, {"propagator.tilt": tilt}, (idx,))

    check(fn, model.propagator.tilt.detach().clone().requires_grad_(True))


def test_losses():
    model = torch.rand(2, 5, 5, generator=gen(5), dtype=F64).requires_grad_(True)
    data = torch.rand(2, 5, 5, generator=gen(6), dtype=F64)
    for loss in (amplitude_loss, intensity_loss, poisson_nll):
        check(lambda m, f=loss: f(m, data), model)


def test_euler_matrix_wrt_angles():
    angles = torch.tensor([0.1, -0.4, 0.7], dtype=F64, requires_grad=True)
    check(lambda a: euler_matrix(a[0], a[1], a[2]), angles)


def test_rotate_volume_wrt_volume_angles_and_shifts():
    geometry = TiltSeriesGeometry(
        torch.tensor([[0.05, 0.31, -0.12], [0.0, -0.52, 0.07]], dtype=F64),
        torch.tensor([[0.13, -0.27], [0.31, 0.08]], dtype=F64),
        voxel=(0.9, 1.0, 1.1),
    )
    volume = torch.rand(5, 6, 7, generator=gen(7), dtype=F64, requires_grad=True)
    angles = geometry.angles.detach().clone().requires_grad_(True)
    shifts = geometry.shifts.detach().clone().requires_grad_(True)

    def fn(v, a, s):
        return torch.func.functional_call(geometry, {"angles": a, "shifts": s}, (v,))

    check(fn, volume, angles, shifts)
    rotation = euler_matrix(angles[:, 0], angles[:, 1], angles[:, 2]).detach()
    check(lambda v: rotate_volume(v, rotation, None, (1, 1, 1)), volume)


def test_binning_and_projection():
    volume = rand(6, 4, 5)
    check(lambda v: bin_slices(v, 3, 0.5), volume)
    check(lambda v: project(v, 0.5), volume)


def test_haadf_ddi_wrt_slices_and_adaptive_kernels():
    slices = rand(2, 3, 8, 8)
    kernels = torch.rand(3, 8, 8, generator=gen(8), dtype=F64, requires_grad=True)
    check(ddi_forward, slices, kernels)
    model = DepthDependentInteraction("adaptive", kernels.detach())
    assert model.kernels.requires_grad


def test_gaussian_atoms_wrt_atoms_angles_and_shifts():
    positions = torch.tensor([[2.1, 3.3, 2.9], [4.4, 2.2, 1.1], [3.0, 4.1, 4.2]], dtype=F64)
    atoms = GaussianAtoms(positions, torch.tensor([1.0, 2.0, 1.5], dtype=F64),
                          torch.tensor([0.5, 0.7, 0.6], dtype=F64))  # fmt: skip
    angles = torch.tensor([[0.02, 0.3, -0.05], [0.0, -0.2, 0.01]], dtype=F64, requires_grad=True)
    shifts = torch.tensor([[0.1, -0.2], [0.0, 0.3]], dtype=F64, requires_grad=True)
    centre = torch.tensor([3.2, 3.2, 3.0], dtype=F64)
    names = ("positions", "heights", "log_widths")
    values = [getattr(atoms, n).detach().clone().requires_grad_(True) for n in names]

    def fn(p, h, w, a, s):
        return torch.func.functional_call(
            atoms, dict(zip(names, (p, h, w), strict=True)),
            (a, s, centre, (8, 8), (0.8, 0.8), 2, 3.0),
        )  # fmt: skip

    check(fn, *values, angles, shifts)
    lab = positions[None].clone().requires_grad_(True)
    check(
        lambda q: render_gaussian_slices(q, atoms.heights, atoms.widths, (8, 8), (0.8, 0.8), 2,
                                         3.0, 3.0),
        lab,
    )  # fmt: skip
