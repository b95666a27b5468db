"""Multislice forward model (one loop over slices), far-field detection, ptychography model.

Shapes: ``B`` scan positions in a batch, ``O`` object states, ``P`` probe modes, ``S`` slices,
``[M1, M2]`` probe window, ``[N1, N2]`` object, ``[n1, n2]`` measured pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .optics import MixedProbe
from .propagation import Propagator, SlicedObject, antialias_aperture, propagate
from .scanning import extract_patches, fourier_shift, split_positions


def multislice_forward(
    probes: Tensor,
    transmission: Tensor | Sequence[Tensor],
    propagators: Tensor,
    propagate_last: bool = False,
) -> Tensor:
    """Exit waves of the multislice recursion ``psi <- P_s (t_s psi)``.

    Args:
        probes: incident waves ``[B, P, M1, M2]`` (or ``[1, P, M1, M2]``), complex.
        transmission: slice transmissions ``[S, B, O, M1, M2]`` complex (slice-major, so each
            slice is one contiguous block: see ``extract_patches(..., batch_dim=1)``), or a
            sequence of ``S`` tensors ``[B, O, M1, M2]`` (patches extracted slice by slice,
            whose gradients then never have to be stacked into one ``[S, B, ...]`` block).
        propagators: ``[S', M1, M2]`` or per position ``[B, S', M1, M2]``, with ``S' = S``
            (entry ``s`` follows slice ``s``; the last one is used only if ``propagate_last``)
            or ``S' = S - 1``.
    Returns:
        exit waves ``[B, O, P, M1, M2]`` complex.
    """
    # one UnbindBackward, not S SelectBackwards
    slices = transmission.unbind(0) if isinstance(transmission, Tensor) else tuple(transmission)
    steps = propagators.unbind(-3)
    batched = propagators.dim() == 4
    psi = probes[:, None]
    for s, t in enumerate(slices):
        psi = psi * t[:, :, None]
        if s < len(slices) - 1 or propagate_last:
            prop = steps[s][:, None, None] if batched else steps[s]
            psi = torch.fft.ifft2(torch.fft.fft2(psi) * prop)
    return psi


def farfield_intensity(exit_waves: Tensor, aperture: Tensor | None = None) -> Tensor:
    """Incoherent far-field intensity ``[B, M1, M2]`` (unshifted) of ``[B, O, P, M1, M2]`` waves.

    Probe modes add (eq. 9 of paper 003); object states are averaged (equal weights ``1/O``) so
    that a unit-intensity probe gives a pattern summing to at most 1. ``aperture [M1, M2]``
    (e.g. the antialias mask) multiplies the spectrum: abTEM propagates once more after the
    last slice with its masked propagator, which changes the intensity only by ``mask**2``.
    """
    amplitude = torch.fft.fft2(exit_waves)
    intensity = (amplitude.real**2 + amplitude.imag**2).sum(dim=2).mean(dim=1)
    return intensity if aperture is None else intensity * aperture**2


def crop_center(patterns: Tensor, out_shape: tuple[int, int]) -> Tensor:
    """fftshift ``[..., M1, M2]`` unshifted patterns and crop ``[..., n1, n2]`` around ``k = 0``.

    The zero frequency lands at index ``(n1 // 2, n2 // 2)`` (abTEM's ``fftshift`` layout; for
    odd ``n`` identical to abTEM's ``diffraction_patterns(max_angle=...)`` crop).
    """
    m1, m2 = patterns.shape[-2:]
    n1, n2 = out_shape
    if n1 > m1 or n2 > m2:
        raise ValueError(f"cannot crop {(m1, m2)} patterns to {out_shape}")
    shifted = torch.fft.fftshift(patterns, dim=(-2, -1))
    a1, a2 = m1 // 2 - n1 // 2, m2 // 2 - n2 // 2
    return shifted[..., a1 : a1 + n1, a2 : a2 + n2]


def crop_center_adjoint(patterns: Tensor, full_shape: tuple[int, int]) -> Tensor:
    """Adjoint of :func:`crop_center`: zero-pad and ifftshift back to ``[..., M1, M2]``."""
    n1, n2 = patterns.shape[-2:]
    m1, m2 = full_shape
    a1, a2 = m1 // 2 - n1 // 2, m2 // 2 - n2 // 2
    pad = (a2, m2 - a2 - n2, a1, m1 - a1 - n1)
    return torch.fft.ifftshift(nn.functional.pad(patterns, pad), dim=(-2, -1))


def resample_patterns(patterns: Tensor, out_shape: tuple[int, int]) -> Tensor:
    """Bilinearly resample fftshifted patterns ``[B, m1, m2]`` to ``[B, n1, n2]``.

    Used when the detector's angular sampling differs from the model's; the total intensity
    is conserved (scaled by ``m1 m2 / (n1 n2)``). The grids are aligned at their centre pixel.
    """
    m1, m2 = patterns.shape[-2:]
    out = nn.functional.interpolate(
        patterns[:, None], size=out_shape, mode="bilinear", align_corners=True
    )[:, 0]
    return out * (m1 * m2) / (out_shape[0] * out_shape[1])


def bandlimit_mask(
    full_shape: tuple[int, int], sampling: tuple[float, float], out_shape: tuple[int, int]
) -> Tensor:
    """Boolean mask ``[n1, n2]`` of detector pixels inside abTEM's 2/3 antialias cutoff."""
    mask = antialias_aperture(full_shape, sampling, taper=0.0) > 0
    return crop_center(mask, out_shape)


class MultislicePtychography(nn.Module):
    """Mixed-state, mixed-object multislice ptychography forward model.

    Components: ``object`` (:class:`SlicedObject`, ``[O, S, N1, N2]`` V Å), ``probe``
    (:class:`MixedProbe`, ``[P, M1, M2]``), ``positions`` ``[K, 2]`` [Å] (object frame),
    ``position_offset`` ``[2]`` [Å] (a global scan offset, group ``"offset"``; e.g. the gauge
    between a tilt pivot at the slab centre and our pivot at the first slice), ``propagator``
    (:class:`Propagator`: slice thickness, tilt). ``forward(indices [B])`` returns model
    patterns ``[B, n1, n2]`` (fftshifted, cropped like the measured data).

    ``obj=None`` makes a model whose transmission is always supplied by the caller
    (``forward(indices, transmission)``), e.g. MSET's rotated and binned volume; ``sampling``
    [Å] of the object grid is then required. A probe window as large as the (periodic) object
    needs no patches: with ``share_whole_object`` (default) the probe is shifted by the whole
    position and the object shared by all positions (the same patterns, faster).

    ``tilt_pivot`` [Å] is the depth, measured from the centre of the first slice, at which the
    scan positions hold for a tilted specimen (the depth that the tilt leaves in place): the
    probe enters at ``p + tilt_pivot * tan(theta)``. ``0`` pivots about the first slice,
    ``(S - 1) dz / 2`` about the middle of the slab (abTEM atoms rotated about the slab centre);
    ``"centre"`` is that middle for the current (learned, possibly per-position) thickness. With
    the propagator's ``centre_depth`` the probe is first propagated from its defocus reference
    plane to the first slice (:meth:`Propagator.entrance`).
    """

    def __init__(
        self,
        obj: SlicedObject | None,
        probe: MixedProbe,
        positions: Tensor,
        propagator: Propagator,
        detector_shape: tuple[int, int],
        tilt_pivot: float | str = 0.0,
        sampling: tuple[float, float] | None = None,
        share_whole_object: bool = True,
    ) -> None:
        super().__init__()
        if obj is None and sampling is None:
            raise ValueError("a model without an object needs the object grid's sampling")
        self.object = obj
        self.sampling = tuple(obj.sampling if sampling is None else sampling)
        self.share_whole_object = share_whole_object
        self.probe = probe
        self.positions = nn.Parameter(positions.clone())
        self.position_offset = nn.Parameter(torch.zeros_like(positions[0]))
        self.propagator = propagator
        self.detector_shape = tuple(detector_shape)
        self.tilt_pivot = tilt_pivot

    @property
    def patch_shape(self) -> tuple[int, int]:
        return tuple(self.probe.modes_real.shape[1:3])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups for :func:`reconstruct.loop.optimize`."""
        obj = [] if self.object is None else [self.object.potential]
        if self.object is not None and self.object.absorption is not None:
            obj.append(self.object.absorption)
        return {
            "object": obj,
            "probe": [self.probe.modes_real, self.probe.occupation_logits],
            "positions": [self.positions],
            "offset": [self.position_offset],
            "tilt": [self.propagator.tilt],
            "slice_thickness": [self.propagator.slice_thickness],
        }

    def exit_waves(self, indices: Tensor, transmission: Tensor | None = None) -> Tensor:
        """Exit waves ``[B, O, P, M1, M2]`` at scan positions ``indices [B]`` through the
        object's transmission, or through ``transmission [O, S, N1, N2]`` if given. In the
        probe window's frame; when the window is the whole object, in the object's frame."""
        t = self.object() if transmission is None else transmission
        n_slices = t.shape[1]
        positions = self.positions[indices] + self.position_offset
        pivot = (self.propagator.pivot(n_slices, indices) if self.tilt_pivot == "centre"
                 else self.tilt_pivot)
        if isinstance(pivot, Tensor) or pivot:
            pivot = torch.as_tensor(pivot, dtype=positions.dtype, device=positions.device)
            shift = torch.tan(self.propagator.tilts(indices))
            positions = positions + (pivot[..., None] if pivot.dim() else pivot) * shift
        props = self.propagator(n_slices, indices)
        whole = self.share_whole_object and tuple(t.shape[-2:]) == self.patch_shape
        if whole:
            # the window is the whole periodic object: shift the probe (centred at M // 2) by
            # the whole position and share the object between positions (no patch copies)
            scale = positions.new_tensor(self.sampling)
            half = positions.new_tensor([s // 2 for s in self.patch_shape])
            probes = fourier_shift(self.probe(), positions / scale - half)
            patches = [ts[None] for ts in t.unbind(1)]
        else:
            corners, frac = split_positions(positions, self.sampling, self.patch_shape)
            # slice by slice: each slice's gradient scatters straight into its object slice
            patches = [extract_patches(ts, corners, self.patch_shape) for ts in t.unbind(1)]
            probes = fourier_shift(self.probe(), frac)
        entrance = self.propagator.entrance(n_slices, indices)
        if entrance is not None:  # from the defocus reference plane to the first slice
            probes = propagate(probes, entrance[:, None] if entrance.dim() == 3 else entrance)
        return multislice_forward(probes, patches, props)

    def forward(self, indices: Tensor, transmission: Tensor | None = None) -> Tensor:
        """Model intensities ``[B, n1, n2]`` at scan positions ``indices [B]`` (through
        ``transmission [O, S, N1, N2]`` if given, see :meth:`exit_waves`)."""
        waves = self.exit_waves(indices, transmission)
        intensity = farfield_intensity(waves, self.propagator.mask)
        return crop_center(intensity, self.detector_shape)
