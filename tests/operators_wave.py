"""Registry cases (``tests/operator_registry.py``): scanning, propagation, optics, multislice
forward model and detection, the ptychography model, losses."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from operator_registry import (
    C128,
    DOSE,
    ENERGY,
    F64,
    SAMPLING,
    SIGMA,
    Case,
    gen,
    rand,
    randn,
    register,
)
from torch import Tensor

from reconstruct import (
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    aberration_phase,
    amplitude_loss,
    antialias_aperture,
    bandlimit,
    crop_center,
    crop_center_adjoint,
    extract_patches,
    extract_patches_adjoint,
    farfield_intensity,
    fourier_probe,
    fourier_shift,
    fresnel_propagator,
    intensity_loss,
    multislice_forward,
    normalize_modes,
    poisson_nll,
    probe_from_aberrations,
    propagate,
    resample_patterns,
    spatial_frequencies,
    split_positions,
    transmission,
)

# --- scanning: patch extraction (periodic) and sub-pixel shifts ------------------------------

# corners with wrap-around (negative, past the edge) and overlapping patches
CORNERS = torch.tensor([[0, 0], [9, 3], [-3, 11], [5, 5]])
SMALL_CORNERS = torch.tensor([[0, 0], [5, 7], [-2, 3]])


def _patches(dtype: torch.dtype, obj_shape: tuple[int, ...], corners: Tensor,
             patch: tuple[int, int]) -> Case:  # fmt: skip
    grid = tuple(obj_shape[-2:])
    return Case(
        lambda o: extract_patches(o, corners, patch),
        (randn(*obj_shape, dtype=dtype),),
        lambda p: extract_patches_adjoint(p, corners, grid),
    )


for _dtype, _suffix in ((C128, ""), (F64, "-real")):
    register(f"extract_patches{_suffix}", extract_patches, extract_patches_adjoint, linear=True)(
        partial(_patches, _dtype, (2, 3, 12, 14), CORNERS, (6, 5))
    )
# the gradient scatter is itself differentiable (custom autograd.Function): gradgradcheck
register("extract_patches-small", extract_patches, extract_patches_adjoint, linear=True,
         twice=True)(partial(_patches, C128, (2, 8, 8), SMALL_CORNERS, (4, 4)))  # fmt: skip
# a patch wider than the object wraps more than once (the index_select branch of _gather)
register("extract_patches-wider_than_object", extract_patches, extract_patches_adjoint,
         linear=True, twice=True)(
    partial(_patches, C128, (2, 8, 8), SMALL_CORNERS, (10, 3))
)  # fmt: skip


@register("extract_patches-batch_dim", extract_patches, extract_patches_adjoint, linear=True)
def _patches_batch_dim() -> Case:
    """``[S, O, N1, N2] -> [S, B, O, M1, M2]`` (batch axis 1, the multislice layout)."""
    return Case(
        lambda o: extract_patches(o, CORNERS, (6, 5), batch_dim=1),
        (randn(2, 3, 12, 14, dtype=C128),),
        lambda p: extract_patches_adjoint(p.movedim(1, 0), CORNERS, (12, 14)),
    )


@register("extract_patches_adjoint", extract_patches_adjoint, extract_patches, linear=True)
def _patches_adjoint() -> Case:
    """The scatter-add as the forward (its own custom backward is the gather)."""
    return Case(
        lambda p: extract_patches_adjoint(p, CORNERS, (12, 14)),
        (randn(4, 2, 3, 6, 5, dtype=C128),),
        lambda o: extract_patches(o, CORNERS, (6, 5)),
    )


SHIFTS = torch.tensor([[0.3, -1.7], [2.25, 0.5]], dtype=F64)  # pixels


@register("fourier_shift", fourier_shift, linear=True)
def _fourier_shift() -> Case:
    """A shared wave shifted by each of B shifts: ``out[b] = x(r - s_b)``."""
    return Case(
        lambda w: fourier_shift(w, SHIFTS),
        # out[b, i] = shift(v_i, -s_b); the adjoint sums the diagonal b = i
        (randn(8, 9, dtype=C128),),
        lambda v: fourier_shift(v, -SHIFTS).diagonal(dim1=0, dim2=1).sum(-1),
    )


@register("fourier_shift-wave_and_shifts", fourier_shift)
def _fourier_shift_both() -> Case:
    shifts = torch.tensor([[0.3, -0.2], [0.1, 0.45]], dtype=F64)
    return Case(fourier_shift, (randn(2, 8, 8, dtype=C128), shifts))


@register("split_positions", split_positions)
def _split_positions() -> Case:
    """The differentiable sub-pixel part of the positions (the corners are integers)."""
    positions = torch.tensor([[0.43, 0.61], [1.17, 0.88], [1.52, 1.29]], dtype=F64)
    return Case(lambda p: split_positions(p, SAMPLING, (6, 6))[1], (positions,))


# --- propagation, transmission, optics ------------------------------------------------------


@register("propagate", propagate, linear=True)
def _propagate() -> Case:
    """A unitary Fresnel-like propagator: the adjoint propagates with ``conj(P)``."""
    prop = torch.polar(torch.ones(8, 9, dtype=F64), randn(8, 9, seed=3))
    x = randn(8, 9, dtype=C128)
    return Case(lambda w: propagate(w, prop), (x,), lambda v: propagate(v, prop.conj()))


@register("bandlimit", bandlimit, linear=True)
def _bandlimit() -> Case:
    """Self-adjoint spectral mask (abTEM's antialias aperture, real)."""
    mask = antialias_aperture((8, 9), (0.3, 0.3), dtype=F64)
    # a non-trivial mask: it passes some frequencies and blocks others
    assert float(mask.max()) == 1.0 and float(mask.min()) == 0.0
    x = randn(8, 9, dtype=C128)
    return Case(lambda w: bandlimit(w, mask), (x,), lambda v: bandlimit(v, mask))


@register("fresnel_propagator", fresnel_propagator)
def _fresnel_propagator() -> Case:
    """Wrt slice thickness ``[S]`` and per-position tilt ``[B, 2]``."""
    kx, ky = spatial_frequencies((8, 8), SAMPLING, dtype=F64)
    dz = torch.tensor([2.0, 1.5], dtype=F64)
    tilt = torch.tensor([[3e-3, -2e-3], [1e-3, 4e-3], [0.0, 1e-2]], dtype=F64)
    return Case(lambda d, t: fresnel_propagator(kx, ky, 0.025, d, t[:, None, :]), (dz, tilt))


@register("transmission", transmission)
def _transmission() -> Case:
    """Potential and absorption in units of ``1 / sigma`` (radians of phase; ``sigma = 1``)."""
    return Case(lambda v, a: transmission(v, 1.0, a), (randn(2, 8, 8), rand(2, 8, 8, seed=1)))


ABERRATIONS = ("C10", "C12", "phi12", "C21", "phi21", "C30")
#: natural units of the coefficients: Å for C1x, 100 Å for C21, µm for C30, rad for angles
ABERRATION_UNITS = (1.0, 1.0, 1.0, 100.0, 1.0, 1e4)


@register("aberration_phase", aberration_phase)
def _aberration_phase() -> Case:
    """chi wrt learnable polar coefficients."""
    kx, ky = spatial_frequencies((8, 8), SAMPLING, dtype=F64)
    alpha = torch.sqrt(kx**2 + ky**2) * 0.025
    phi = torch.atan2(ky.expand(8, 8), kx.expand(8, 8))
    coeffs = torch.tensor([-30.0, 5.0, 0.3, 40.0, 1.0, 2e3], dtype=F64)

    def forward(c: Tensor) -> Tensor:
        return aberration_phase(alpha, phi, 0.025, dict(zip(ABERRATIONS, c, strict=True)))

    return Case(forward, (coeffs,))


@register("probe_from_aberrations", probe_from_aberrations, fourier_probe)
def _probe_from_aberrations() -> Case:
    """The real-space probe (in units of its rms amplitude, ``1 / (M1 M2)``) wrt learnable
    aberration coefficients in units of ``ABERRATION_UNITS`` (soft aperture)."""
    units = torch.tensor(ABERRATION_UNITS, dtype=F64)

    def forward(c: Tensor) -> Tensor:
        aberrations = dict(zip(ABERRATIONS, c * units, strict=True))
        return probe_from_aberrations((8, 8), SAMPLING, ENERGY, 0.03, aberrations, dtype=F64) * 64

    return Case(forward, (torch.tensor([-20.0, 4.0, 0.3, 30.0, 1.0, 1e3], dtype=F64) / units,))


@register("normalize_modes", normalize_modes)
def _normalize_modes() -> Case:
    return Case(normalize_modes, (randn(2, 6, 6, dtype=C128),))


# --- multislice forward model and detection -------------------------------------------------


@register("multislice_detection", multislice_forward, farfield_intensity, crop_center)
def _multislice_detection() -> Case:
    """Exit waves of ``[S, B, O, M1, M2]`` slices -> masked far-field intensity -> crop."""
    aperture = rand(8, 8, seed=3)

    def forward(p: Tensor, t: Tensor, pr: Tensor) -> Tensor:
        return crop_center(farfield_intensity(multislice_forward(p, t, pr), aperture), (5, 5))

    probes, slices = randn(3, 2, 8, 8, dtype=C128), randn(2, 3, 2, 8, 8, dtype=C128, seed=1)
    return Case(forward, (probes, slices, randn(2, 8, 8, dtype=C128, seed=2)))


@register("multislice_forward-per_position", multislice_forward)
def _multislice_per_position() -> Case:
    """Slices as a sequence, per-position propagators ``[B, S, M1, M2]``, ``propagate_last``."""

    def forward(p: Tensor, t0: Tensor, t1: Tensor, pr: Tensor) -> Tensor:
        return multislice_forward(p, [t0, t1], pr, propagate_last=True)

    t0, t1 = randn(3, 1, 6, 6, dtype=C128, seed=1), randn(3, 1, 6, 6, dtype=C128, seed=2)
    return Case(forward, (randn(1, 2, 6, 6, dtype=C128), t0, t1, randn(3, 2, 6, 6, dtype=C128)))


@register("crop_center", crop_center, crop_center_adjoint, linear=True)
def _crop_center() -> Case:
    """Detector crop around k = 0 of unshifted ``[16, 15]`` patterns (odd and even sizes)."""
    return Case(
        lambda i: crop_center(i, (9, 8)),
        (randn(3, 16, 15),),
        lambda c: crop_center_adjoint(c, (16, 15)),
    )


@register("resample_patterns", resample_patterns)
def _resample_patterns() -> Case:
    return Case(lambda p: resample_patterns(p, (5, 6)), (rand(2, 7, 7),))


def tiny_model(per_position_tilt: bool = False) -> MultislicePtychography:
    """A float64 two-slice, two-mode, absorbing multislice ptychography model (3 positions)."""
    shape, n_pos = (8, 8), 3
    probe = probe_from_aberrations(shape, SAMPLING, ENERGY, 0.03, {"C10": -20.0}, dtype=F64)
    potential = rand(2, 2, 10, 10, seed=4) * 50
    tilt = torch.tensor([[2e-3, -1e-3]] * n_pos if per_position_tilt else [2e-3, -1e-3])
    model = MultislicePtychography(
        SlicedObject(potential, ENERGY, SAMPLING, absorption=True),
        MixedProbe(probe, n_modes=2),
        torch.tensor([[0.43, 0.61], [1.17, 0.88], [1.52, 1.31]], dtype=F64),
        Propagator(shape, SAMPLING, ENERGY, 1.5, tilt=tilt.to(F64), dtype=F64),
        (6, 6),
    )
    with torch.no_grad():
        model.object.absorption.uniform_(0, 5, generator=gen(9))
    return model.to(F64)


#: the model's parameters by name -> their path in ``named_parameters``
PTYCHO_PARAMETERS = {
    "object": "object.potential",
    "absorption": "object.absorption",
    "probe": "probe.modes_real",
    "occupations": "probe.occupation_logits",
    "positions": "positions",
    "offset": "position_offset",
    "tilt": "propagator.tilt",
    "thickness": "propagator.slice_thickness",
}


#: units of the parameters in the gradcheck (default: the model's own): potentials in rad
PTYCHO_UNITS = {"object": 1 / SIGMA, "absorption": 1 / SIGMA}


def _ptychography(parameter: str, per_position_tilt: bool = False) -> Case:
    """Model patterns [counts at ``DOSE``] wrt one parameter (the others frozen), via
    ``functional_call``; object and absorption in radians of phase."""
    model = tiny_model(per_position_tilt)
    path, unit = PTYCHO_PARAMETERS[parameter], PTYCHO_UNITS.get(parameter, 1.0)
    value = dict(model.named_parameters())[path].detach().clone()
    for p in model.parameters():
        p.requires_grad_(False)
    idx = torch.tensor([2, 0]) if per_position_tilt else torch.arange(3)

    def forward(v: Tensor) -> Tensor:
        return torch.func.functional_call(model, {path: v * unit}, (idx,)) * DOSE

    return Case(forward, (value / unit,))


_PTYCHO = (MultislicePtychography, SlicedObject, MixedProbe, Propagator)
for _name in PTYCHO_PARAMETERS:
    register(f"ptychography-{_name}", *_PTYCHO)(partial(_ptychography, _name))
    # the full Jacobian (fast_mode=False) of the end-to-end model: -m slow
    register(f"ptychography-{_name}-full_jacobian", *_PTYCHO, fast=False, slow=True)(
        partial(_ptychography, _name)
    )
# per-position tilts [K, 2], a batch of positions out of order
register("ptychography-per_position_tilt", *_PTYCHO)(partial(_ptychography, "tilt", True))


def _whole_object(wrt: str) -> Case:
    """The model with no object of its own (MSET's route): the caller's transmission
    ``[O, S, N1, N2]`` fills the whole window, the probe is shifted by the whole position.
    Patterns [counts at ``DOSE``] wrt the transmission's phase [rad] or the positions [Å]."""
    shape = (8, 8)
    probe = probe_from_aberrations(shape, SAMPLING, ENERGY, 0.03, {"C10": -20.0}, dtype=F64)
    positions = torch.tensor([[0.43, 0.61], [1.17, 0.88], [1.52, 1.31]], dtype=F64)
    model = MultislicePtychography(
        None, MixedProbe(probe, n_modes=2), positions,
        Propagator(shape, SAMPLING, ENERGY, 1.5, dtype=F64), (6, 6), sampling=SAMPLING,
    ).to(F64)
    for p in model.parameters():
        p.requires_grad_(False)
    phase, idx = rand(1, 2, *shape, seed=4), torch.arange(3)

    def forward(x: Tensor) -> Tensor:
        if wrt == "positions":
            return torch.func.functional_call(
                model, {"positions": x}, (idx, torch.polar(torch.ones_like(phase), phase))
            ) * DOSE
        return model(idx, torch.polar(torch.ones_like(x), x)) * DOSE

    return Case(forward, (positions.clone() if wrt == "positions" else phase,))


for _wrt in ("transmission", "positions"):
    register(f"ptychography-whole_object-{_wrt}", MultislicePtychography)(
        partial(_whole_object, _wrt)
    )


# --- losses ---------------------------------------------------------------------------------

for _loss in (amplitude_loss, intensity_loss, poisson_nll):

    def _loss_case(loss: Callable[..., Tensor] = _loss) -> Case:
        data = rand(2, 5, 5, seed=6)
        return Case(lambda m: loss(m, data), (rand(2, 5, 5, seed=5),))

    register(_loss.__name__, _loss)(_loss_case)


