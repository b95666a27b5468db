"""Optics, mixed states, scanning and detection: conventions the other tests rely on."""

from __future__ import annotations

import math

import pytest
import torch

from reconstruct import (
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    amplitude_loss,
    bandlimit_mask,
    crop_center,
    extract_patches,
    fourier_probe,
    fourier_shift,
    intensity_loss,
    poisson_nll,
    probe_from_aberrations,
    probe_from_mean_pattern,
    resample_patterns,
    split_positions,
)
from reconstruct.optics import aberration_phase, polar_angles, spatial_frequencies

F64 = torch.float64
ENERGY, SAMPLING = 200e3, (0.15, 0.15)


def gram(modes: torch.Tensor) -> torch.Tensor:
    flat = modes.reshape(modes.shape[0], -1)
    return flat.conj() @ flat.T


def test_probe_normalisation_unit_far_field_intensity():
    probe = probe_from_aberrations((48, 40), SAMPLING, ENERGY, 0.025, {"C30": 1e4}, dtype=F64)
    assert torch.fft.fft2(probe).abs().pow(2).sum().item() == pytest.approx(1.0, rel=1e-12)
    centre = torch.nonzero(probe.abs() == probe.abs().max())[0].tolist()
    assert centre == [24, 20]


def test_mixed_probe_modes_are_orthogonal_and_occupations_sum_to_one():
    probe = probe_from_aberrations((32, 32), SAMPLING, ENERGY, 0.025, {"C10": -40.0}, dtype=F64)
    mixed = MixedProbe(probe, n_modes=5, total_intensity=0.8).to(F64)
    modes = mixed()
    assert modes.shape == (5, 32, 32) and modes.dtype == torch.complex128
    g = gram(modes)
    off_diagonal = g - torch.diag(torch.diagonal(g))
    assert off_diagonal.abs().max() < 1e-12
    assert mixed.occupations().sum().item() == pytest.approx(1.0)
    power = torch.fft.fft2(modes).abs().pow(2).sum()
    assert power.item() == pytest.approx(0.8, rel=1e-10)
    # mode 0 keeps the shape of the initial probe
    overlap = (probe.conj() * modes[0]).sum().abs() / (probe.norm() * modes[0].norm())
    assert overlap.item() == pytest.approx(1.0, abs=1e-12)


def test_orthogonalize_preserves_the_incoherent_intensity():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(4, 16, 16, dtype=torch.complex128, generator=g)
    mixed = MixedProbe(raw, n_modes=4).to(F64)
    before = mixed().abs().pow(2).sum(0)
    mixed.orthogonalize_()
    after = mixed()
    torch.testing.assert_close(after.abs().pow(2).sum(0), before)
    g2 = gram(after)
    assert (g2 - torch.diag(torch.diagonal(g2))).abs().max() < 1e-12
    powers = torch.diagonal(g2).real
    assert torch.all(powers[:-1] >= powers[1:])  # sorted by occupation


def test_probe_from_mean_pattern_algorithm_1():
    """Vacuum data of a known probe: the initial probe with the right chi0 is that probe."""
    shape, aberrations = (32, 32), {"defocus": 50.0, "C30": 2e4}
    probe = probe_from_aberrations(shape, SAMPLING, ENERGY, 0.025, aberrations, dtype=F64)
    pattern = torch.fft.fftshift(torch.fft.fft2(probe).abs() ** 2)
    dose = torch.tensor([0.9, 1.0, 0.95], dtype=F64)[:, None, None]
    patterns = pattern[None] * dose
    kx, ky = spatial_frequencies(shape, SAMPLING, dtype=F64)
    from reconstruct import energy2wavelength

    alpha, phi = polar_angles(kx, ky, energy2wavelength(ENERGY))
    chi0 = aberration_phase(alpha, phi, energy2wavelength(ENERGY), aberrations)
    unit = probe_from_mean_pattern(patterns, chi0, intensity="unit")
    torch.testing.assert_close(unit, probe, atol=1e-12, rtol=0)
    scaled = probe_from_mean_pattern(patterns, chi0)  # a_max = max_k ||I_k||_1 = 1.0
    assert torch.fft.fft2(scaled).abs().pow(2).sum().item() == pytest.approx(1.0)


def test_soft_aperture_edge_and_fourier_probe():
    psi = fourier_probe((64, 64), (0.2, 0.2), ENERGY, 0.02, dtype=F64)
    assert psi.abs().pow(2).sum().item() == pytest.approx(1.0)
    hard = fourier_probe((64, 64), (0.2, 0.2), ENERGY, 0.02, soft=False, dtype=F64)
    assert ((hard.abs() > 0) & (hard.abs() < hard.abs().max() * 0.999)).sum() == 0
    soft_edge = (psi.abs() > 0) & (psi.abs() < psi.abs().max() * 0.999)
    assert soft_edge.sum() > 0


def test_subpixel_shift_is_continuous_across_the_integer_crop():
    """Patch = whole periodic object: crop + Fourier shift equals a pure Fourier shift."""
    g = torch.Generator().manual_seed(1)
    obj = torch.exp(1j * torch.rand(1, 1, 24, 24, generator=g, dtype=F64))
    probe = probe_from_aberrations((24, 24), (0.2, 0.2), ENERGY, 0.03, {"C10": -20.0}, dtype=F64)
    outs = []
    for u in (5.5 - 1e-9, 5.5 + 1e-9):  # rounding flips from 5 to 6 here
        positions = torch.tensor([[u * 0.2, 3.3 * 0.2]], dtype=F64)
        corners, frac = split_positions(positions, (0.2, 0.2), (24, 24))
        patch = extract_patches(obj, corners, (24, 24))[:, 0, 0]
        wave = patch * fourier_shift(probe, frac)[:, :]
        outs.append(torch.fft.fft2(wave).abs() ** 2)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-7, rtol=0)


def test_crop_resample_and_bandlimit_mask():
    patterns = torch.zeros(1, 16, 16, dtype=F64)
    patterns[0, 0, 0] = 1.0  # zero frequency, unshifted
    for shape in ((9, 9), (8, 7)):
        cropped = crop_center(patterns, shape)
        assert cropped[0, shape[0] // 2, shape[1] // 2] == 1.0
    smooth = torch.rand(2, 11, 11, dtype=F64)
    resampled = resample_patterns(smooth, (21, 21))
    assert resampled.sum().item() == pytest.approx(smooth.sum().item(), rel=0.05)
    mask = bandlimit_mask((64, 64), (0.1, 0.1), (63, 63))
    k_cut_pixels = (2 / 3) / 0.1 / 2 / (1 / 6.4)
    assert mask.sum().item() == pytest.approx(math.pi * k_cut_pixels**2, rel=0.05)


def test_losses_vanish_at_the_truth_and_are_positive_elsewhere():
    data = torch.rand(3, 5, 5, dtype=F64)
    for loss in (amplitude_loss, intensity_loss):
        assert loss(data, data).item() == pytest.approx(0.0, abs=1e-14)
        assert loss(data * 1.1, data).item() > 0
    # the Poisson NLL is minimal at model == data, and referenced to it: 0 there (so that a
    # penalty scaled by the starting loss, and the divergence check, mean what they say)
    counts = torch.poisson(data * 50, generator=torch.Generator().manual_seed(0))
    nll = [poisson_nll(counts * s, counts).item() for s in (0.9, 1.0, 1.1)]
    assert nll[1] < nll[0] and nll[1] < nll[2]
    assert nll[1] == pytest.approx(0.0, abs=1e-12)
    # and it keeps the likelihood's gradient, 1 - I / I_model (per pattern, batch mean)
    model = (data * 40 + 1).requires_grad_()
    poisson_nll(model, counts, eps=0.0).backward()
    assert torch.allclose(model.grad, (1 - counts / model.detach()) / 3, rtol=1e-12)


def test_object_states_average_and_modes_add():
    shape = (16, 16)
    probe = probe_from_aberrations(shape, SAMPLING, ENERGY, 0.03, {"C10": -10.0}, dtype=F64)
    potential = torch.rand(2, 1, 20, 20, dtype=F64) * 100
    model = MultislicePtychography(
        SlicedObject(potential, ENERGY, SAMPLING, antialias=False),
        MixedProbe(probe, n_modes=3),
        torch.tensor([[1.0, 1.2]], dtype=F64),
        Propagator(shape, SAMPLING, ENERGY, 1.0, antialias=False, dtype=F64),
        shape,
    ).to(F64)
    idx = torch.tensor([0])
    total = model(idx)
    assert total.sum().item() == pytest.approx(1.0, rel=1e-10)  # unit probe, no bandlimit
    waves = model.exit_waves(idx)
    per_state = torch.fft.fft2(waves).abs().pow(2).sum(2)  # modes add
    expected = crop_center(per_state.mean(1), shape)  # states average
    torch.testing.assert_close(total, expected)


def test_sliced_object_takes_a_numpy_potential_and_refuses_other_input():
    """abTEM's ``Potential.build().array`` is numpy: it gives the same transmission as the same
    values as a tensor; a wrong shape or a non-numeric input is refused by name."""
    import numpy as np
    import pytest

    from reconstruct import SlicedObject

    v = np.random.default_rng(0).uniform(0, 20, (2, 6, 6))
    a = SlicedObject(v, 200e3, (0.2, 0.2))()
    b = SlicedObject(torch.as_tensor(v, dtype=torch.float32), 200e3, (0.2, 0.2))()
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="potential must be"):
        SlicedObject(np.zeros((6, 6)), 200e3, (0.2, 0.2))
    with pytest.raises(TypeError, match="SlicedObject potential"):
        SlicedObject("slices.npy", 200e3, (0.2, 0.2))
