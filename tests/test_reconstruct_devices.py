"""Dtypes and devices are preserved: float32/complex64 in -> out, float64/complex128 in -> out.

The same tests run on CUDA when available (marked ``cuda``; skipped cleanly otherwise).
"""

from __future__ import annotations

import pytest
import torch

from reconstruct import (
    DepthDependentInteraction,
    GaussianAtoms,
    GroupSettings,
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    TiltSeriesGeometry,
    amplitude_loss,
    bin_slices,
    depth_probe_kernels,
    extract_patches,
    fourier_shift,
    fresnel_propagator,
    index_batches,
    optimize,
    probe_from_aberrations,
    spatial_frequencies,
    transmission,
)

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ],
)
DEVICES = ["cpu", CUDA]
PAIRS = [(torch.float32, torch.complex64), (torch.float64, torch.complex128)]
ENERGY, SAMPLING = 200e3, (0.2, 0.2)


def assert_on(t: torch.Tensor, device: str, dtype: torch.dtype) -> None:
    assert t.device.type == device and t.dtype == dtype, (t.device, t.dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("real,cplx", PAIRS)
def test_pure_functions_preserve_dtype_and_device(device, real, cplx):
    kx, ky = spatial_frequencies((8, 8), SAMPLING, device=device, dtype=real)
    assert_on(kx, device, real)
    tilt = torch.tensor([1e-3, 2e-3], device=device, dtype=real)
    assert_on(fresnel_propagator(kx, ky, 0.025, 2.0, tilt), device, cplx)
    v = torch.rand(2, 8, 8, device=device, dtype=real)
    assert_on(transmission(v, 7e-4, v), device, cplx)
    probe = probe_from_aberrations((8, 8), SAMPLING, ENERGY, 0.03, {}, device=device, dtype=real)
    assert_on(probe, device, cplx)
    shifts = torch.rand(3, 2, device=device, dtype=real)
    assert_on(fourier_shift(probe, shifts), device, cplx)
    corners = torch.tensor([[0, 1], [3, 4]], device=device)
    assert_on(extract_patches(v.to(cplx), corners, (4, 4)), device, cplx)
    assert_on(bin_slices(torch.rand(4, 5, 5, device=device, dtype=real), 2, 1.0), device, real)
    depths = torch.tensor([0.0, 5.0], device=device, dtype=real)
    kernels = depth_probe_kernels((8, 8), SAMPLING, ENERGY, 0.03, depths)
    assert_on(kernels, device, real)
    ddi = DepthDependentInteraction("rigid", kernels).to(device)
    assert_on(ddi(torch.rand(3, 2, 8, 8, device=device, dtype=real)), device, real)


def _ptycho(device: str, real: torch.dtype) -> MultislicePtychography:
    probe = probe_from_aberrations((8, 8), SAMPLING, ENERGY, 0.03, {"C10": -10.0})
    model = MultislicePtychography(
        SlicedObject(torch.rand(2, 12, 12), ENERGY, SAMPLING, absorption=True),
        MixedProbe(probe, n_modes=2),
        torch.rand(4, 2) + 0.5,
        Propagator((8, 8), SAMPLING, ENERGY, 1.0, tilt=torch.zeros(4, 2)),
        (5, 5),
    )
    return model.to(device=device, dtype=real)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("real,cplx", PAIRS)
def test_modules_follow_to_device_and_dtype(device, real, cplx):
    model = _ptycho(device, real)
    assert_on(model.probe(), device, cplx)
    assert_on(model.object(), device, cplx)
    idx = torch.arange(4, device=device)
    out = model(idx)
    assert_on(out, device, real)
    loss = amplitude_loss(out, torch.rand_like(out))
    loss.backward()
    assert_on(model.positions.grad, device, real)
    assert_on(model.propagator.tilt.grad, device, real)
    geometry = TiltSeriesGeometry(torch.zeros(2, 3), voxel=(1.0, 1.0, 1.0)).to(device, real)
    assert_on(geometry(torch.rand(4, 5, 6, device=device, dtype=real)), device, real)
    atoms = GaussianAtoms(torch.rand(3, 3) * 4, torch.ones(3), torch.ones(3)).to(device, real)
    centre = torch.tensor([2.0, 2.0, 2.0], device=device, dtype=real)
    slices = atoms(geometry.angles, geometry.shifts, centre, (6, 6), (0.8, 0.8), 2, 2.0)
    assert_on(slices, device, real)


@pytest.mark.parametrize("device", DEVICES)
def test_loop_runs_on_device(device):
    model = _ptycho(device, torch.float32)
    data = model(torch.arange(4, device=device)).detach()
    with torch.no_grad():
        model.object.potential.zero_()
    history = optimize(
        model,
        lambda m, idx: amplitude_loss(m(idx), data[idx]),
        index_batches(4, 2, device=device),
        {"object": GroupSettings(lr=0.1)},
        n_iter=3,
        progress=False,
    )
    assert len(history.loss) == 3
    assert_on(model.object.potential, device, torch.float32)
