"""Regularisers of sliced objects and tilt maps, and the slice post-alignment of paper 002.

Pure functions on tensors; the variants wrap them as constraints (applied after an update) or
loss terms. Shapes: a sliced object ``[..., S, N1, N2]`` (slices along the beam, ``dz`` Å
apart, pixels of ``sampling`` Å); a tilt map ``[sx, sy, 2]`` (rad).

- :func:`kz_filter`: the missing-cone filter of multislice ptychography (the ``regularize
  layers`` weight of Tsai et al. 2016, also in fold_slice and PtyRAD):
  ``W = 1 - (2/π) arctan(β² kz² / (kx² + ky²))``, 1 at ``kz = 0``, 0 at ``kx = ky = 0``;
- :func:`butterworth_z`: a Butterworth low-pass along z only,
  ``W = 1 / (1 + (|kz| / kc)^(2n))``, ``kc`` a fraction of the z Nyquist frequency;
- :func:`butterworth_3d`: an isotropic Butterworth low-pass of a volume, cut-off in 1/Å;
- :func:`tilt_smoothness`: mean squared finite differences of a tilt map (rad², per axis);
- :func:`slice_shifts`, :func:`align_slices`: cross-correlation post-alignment of the slices
  of a fixed-propagator reconstruction (paper 002, Fig. 1C), periodic, sub-pixel.

The two filters are real, even functions of k: linear and self-adjoint (tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .scanning import fourier_shift, fourier_shift_ramp


def _frequencies(shape: tuple[int, int, int], sampling: tuple[float, float], dz: float,
                 like: Tensor) -> tuple[Tensor, Tensor]:
    """``kz [S, 1, 1]`` and ``kr² [1, N1, N2]`` in 1/Å (and 1/Å²) for a ``[S, N1, N2]`` grid."""
    real = like.real.dtype if like.is_complex() else like.dtype
    kz = torch.fft.fftfreq(shape[0], dz, device=like.device, dtype=real)[:, None, None]
    kx = torch.fft.fftfreq(shape[1], sampling[0], device=like.device, dtype=real)
    ky = torch.fft.fftfreq(shape[2], sampling[1], device=like.device, dtype=real)
    return kz, (kx[:, None] ** 2 + ky[None, :] ** 2)[None]


def _filter3d(x: Tensor, weight: Tensor) -> Tensor:
    out = torch.fft.ifftn(torch.fft.fftn(x, dim=(-3, -2, -1)) * weight, dim=(-3, -2, -1))
    return out if x.is_complex() else out.real


def kz_filter(x: Tensor, sampling: tuple[float, float], dz: float, beta: float = 1.0) -> Tensor:
    """Missing-cone (kz) filter of ``x [..., S, N1, N2]`` (real or complex; Å pixels
    ``sampling``, slices ``dz`` Å apart); ``beta`` sets the cone's opening (larger: stronger)."""
    kz, kr2 = _frequencies(tuple(x.shape[-3:]), sampling, dz, x)
    weight = 1 - (2 / math.pi) * torch.atan(beta**2 * kz**2 / kr2.clamp_min(1e-12))
    weight = torch.where(kz == 0, torch.ones_like(weight), weight)
    return _filter3d(x, weight)


def butterworth_z(x: Tensor, cutoff: float = 0.5, order: int = 4) -> Tensor:
    """Butterworth low-pass along the slice axis of ``x [..., S, N1, N2]``: ``cutoff`` is
    ``kc`` as a fraction of the z Nyquist frequency, ``order`` the filter's ``n``."""
    if cutoff <= 0 or order < 1:
        raise ValueError(f"butterworth_z needs cutoff > 0 and order >= 1, got {cutoff}, {order}")
    real = x.real.dtype if x.is_complex() else x.dtype
    kz = torch.fft.fftfreq(x.shape[-3], device=x.device, dtype=real).abs() / 0.5  # / Nyquist
    weight = (1 / (1 + (kz / cutoff) ** (2 * order)))[:, None, None]
    out = torch.fft.ifft(torch.fft.fft(x, dim=-3) * weight, dim=-3)
    return out if x.is_complex() else out.real


def butterworth_3d(x: Tensor, voxel: tuple[float, float, float], cutoff: float, order: int = 2
                   ) -> Tensor:
    """Isotropic Butterworth low-pass of a volume ``x [..., Z, X, Y]`` with voxel ``(dz, dx,
    dy)`` Å: ``W = 1 / (1 + (|k| / kc)^(2n))``, ``kc = cutoff`` in 1/Å (paper 000's ablation:
    1.51 1/Å, order 2 "relaxed"; 0.49 1/Å, order 8 "strict")."""
    if cutoff <= 0 or order < 1:
        raise ValueError(f"butterworth_3d needs cutoff > 0 and order >= 1, got {cutoff}, {order}")
    kz, kr2 = _frequencies(tuple(x.shape[-3:]), voxel[1:], voxel[0], x)
    weight = 1 / (1 + ((kz**2 + kr2) / cutoff**2) ** order)
    return _filter3d(x, weight)


def tilt_smoothness(tilt_map: Tensor) -> Tensor:
    """The mean squared difference between neighbouring entries of a tilt map ``[sx, sy, 2]``
    (rad²) along x plus the same along y: the smoothness penalty of extended APP."""
    dx = tilt_map[1:] - tilt_map[:-1]
    dy = tilt_map[:, 1:] - tilt_map[:, :-1]
    terms = [d.pow(2).mean() for d in (dx, dy) if d.numel()]
    return sum(terms) if terms else tilt_map.sum() * 0


def _peak(cc: Tensor, max_shift: float | None = None) -> Tensor:
    """Sub-pixel position ``[2]`` (pixels, signed, periodic) of the maximum of ``cc [N1, N2]``
    within ``max_shift`` pixels of zero (None: anywhere), from a parabola through the peak and
    its neighbours on each axis."""
    n1, n2 = cc.shape
    if max_shift is not None:
        f1 = torch.fft.fftfreq(n1, 1 / n1, dtype=cc.dtype)[:, None]
        f2 = torch.fft.fftfreq(n2, 1 / n2, dtype=cc.dtype)[None]
        cc = torch.where(f1**2 + f2**2 <= max_shift**2, cc, torch.full_like(cc, -torch.inf))
    i, j = divmod(int(torch.argmax(cc)), n2)
    b = float(cc[i, j])
    out = []
    for k, n, a, c in ((i, n1, cc[(i - 1) % n1, j], cc[(i + 1) % n1, j]),
                       (j, n2, cc[i, (j - 1) % n2], cc[i, (j + 1) % n2])):
        a, c = (float(x) if torch.isfinite(x) else b for x in (a, c))
        denom = a - 2 * b + c
        pos = k + (0.5 * (a - c) / denom if denom < 0 else 0.0)
        out.append(pos - n if pos > n / 2 else pos)
    return torch.tensor(out, dtype=cc.dtype)


def slice_shifts(slices: Tensor, reference: int | None = None, refine: int = 2,
                 max_shift: float | None = None) -> Tensor:
    """Shifts ``[S, 2]`` (pixels) of each slice of ``slices [S, N1, N2]`` (real) relative to
    slice ``reference`` (default the middle one), from the peak of their periodic
    cross-correlation (mean-subtracted) within ``max_shift`` pixels (a crystal's lattice
    repeats the peak every period: keep it below half of one); ``refine`` further passes on
    the shifted slices remove the parabola's sub-pixel bias."""
    s = slices - slices.mean(dim=(-2, -1), keepdim=True)
    ref = torch.fft.fft2(s[s.shape[0] // 2 if reference is None else reference]).conj()
    spectra, total = torch.fft.fft2(s), torch.zeros(s.shape[0], 2, dtype=s.dtype)
    for _ in range(refine + 1):
        moved = spectra * _ramps(-total, s.shape[-2:], s)
        cc = torch.fft.ifft2(moved * ref).real
        total = total + torch.stack([_peak(c, max_shift) for c in cc])
    return total.to(slices.device)


def _ramps(shifts: Tensor, shape: torch.Size, like: Tensor) -> Tensor:
    return fourier_shift_ramp(shifts.to(like.device, like.dtype), tuple(shape))


def align_slices(slices: Tensor, reference: int | None = None,
                 max_shift: float | None = None) -> tuple[Tensor, Tensor]:
    """Post-alignment: ``slices [S, N1, N2]`` (real) shifted onto slice ``reference`` (default
    the middle one) by cross-correlation (peak within ``max_shift`` pixels), and the shifts
    ``[S, 2]`` (pixels) removed."""
    shifts = slice_shifts(slices, reference, max_shift=max_shift)
    aligned = [fourier_shift(x, -d[None])[0].real for x, d in zip(slices, shifts, strict=True)]
    return torch.stack(aligned), shifts


def local_slice_shifts(slices: Tensor, centres: Tensor, window: int,
                       max_shift: float | None = None) -> Tensor:
    """Shifts ``[K, S, 2]`` (pixels) of each slice of ``slices [S, N1, N2]`` relative to the
    middle one in a ``window``-pixel square (Hann-weighted, periodic) around each of the
    ``centres [K, 2]`` (pixels): the local version of :func:`slice_shifts`."""
    hann = torch.hann_window(window, periodic=False, dtype=slices.dtype, device=slices.device)
    weight = hann[:, None] * hann[None]
    out = []
    for patch in _windows(slices, centres, window):
        patch = (patch - patch.mean(dim=(-2, -1), keepdim=True)) * weight
        out.append(slice_shifts(patch, max_shift=max_shift, refine=1))
    return torch.stack(out)


def window_signal(image: Tensor, centres: Tensor, window: int) -> Tensor:
    """Standard deviation ``[K]`` of ``image [N1, N2]`` in a ``window``-pixel square around
    each of ``centres [K, 2]`` (pixels, periodic): how much structure a window holds."""
    return torch.stack([patch.std() for patch in _windows(image, centres, window)])


def _windows(x: Tensor, centres: Tensor, window: int) -> list[Tensor]:
    """The ``window``-pixel squares ``[..., W, W]`` of ``x [..., N1, N2]`` around each of
    ``centres [K, 2]`` (pixels, periodic)."""
    offset = torch.arange(window, device=x.device) - window // 2
    n1, n2 = x.shape[-2:]
    return [x[..., (c[0] + offset) % n1, :][..., (c[1] + offset) % n2]
            for c in torch.round(centres).long()]



def shift_field(x: Tensor, displacement: Tensor) -> Tensor:
    """``x(r - d(r))`` for images ``x [..., N1, N2]`` and a small, smooth displacement field
    ``displacement [..., 2, N1, N2]`` (pixels, well below one), to first order:
    ``x - d · ∇x`` with spectral derivatives (periodic)."""
    f1 = torch.fft.fftfreq(x.shape[-2], device=x.device, dtype=x.dtype)[:, None]
    f2 = torch.fft.fftfreq(x.shape[-1], device=x.device, dtype=x.dtype)[None]
    spectrum = torch.fft.fft2(x)
    d1 = torch.fft.ifft2(spectrum * (2j * math.pi * f1)).real
    d2 = torch.fft.ifft2(spectrum * (2j * math.pi * f2)).real
    return x - displacement[..., 0, :, :] * d1 - displacement[..., 1, :, :] * d2
