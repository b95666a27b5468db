"""Scan positions: integer patch extraction (with adjoint) and sub-pixel Fourier shifts.

A scan position ``p = (x, y)`` [Å] maps to pixel coordinates ``u = p / sampling`` on the object
grid (pixel ``(i, j)`` sits at ``(i s1, j s2)``, origin 0, as in abTEM). The probe array is
stored centred at pixel ``(M1 // 2, M2 // 2)`` of its ``[M1, M2]`` window. For a position we
take ``c = round(u)``, extract the object patch whose pixel ``(0, 0)`` is object pixel
``c - M // 2`` (periodic wrap-around at the object edges), and shift the probe by the
fractional part ``u - c`` with a Fourier phase ramp, which carries the gradient with respect
to the positions. No Python loop runs over positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def split_positions(
    positions: Tensor, sampling: tuple[float, float], patch_shape: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Split positions ``[B, 2]`` [Å] into patch corners ``[B, 2]`` (long) and
    sub-pixel shifts ``[B, 2]`` [pixels, in ``[-0.5, 0.5]``, differentiable]."""
    scale = torch.tensor(sampling, dtype=positions.dtype, device=positions.device)
    pixels = positions / scale
    centre = torch.round(pixels.detach())
    half = torch.tensor(
        [patch_shape[0] // 2, patch_shape[1] // 2], device=positions.device, dtype=torch.long
    )
    return centre.long() - half, pixels - centre


def _flat_indices(
    corners: Tensor, patch_shape: tuple[int, int], object_shape: tuple[int, int]
) -> Tensor:
    """Flat (row-major) object indices ``[B * M1 * M2]`` of the patches, wrapped periodically."""
    m1, m2 = patch_shape
    n1, n2 = object_shape
    ix = (corners[:, 0, None] + torch.arange(m1, device=corners.device)) % n1
    iy = (corners[:, 1, None] + torch.arange(m2, device=corners.device)) % n2
    return (ix[:, :, None] * n2 + iy[:, None, :]).reshape(-1)


def extract_patches(
    obj: Tensor, corners: Tensor, patch_shape: tuple[int, int], batch_dim: int = 0
) -> Tensor:
    """Crop patches from ``obj [*lead, N1, N2]`` at ``corners [B, 2]``.

    Returns ``[B, *lead, M1, M2]``, or with ``batch_dim = d`` the batch axis at position ``d``
    (e.g. ``[S, B, O, M1, M2]`` from ``[S, O, N1, N2]`` with ``d = 1``). Linear in ``obj``
    (real or complex); adjoint: :func:`extract_patches_adjoint` (for ``batch_dim = 0``).
    """
    lead, object_shape = obj.shape[:-2], tuple(obj.shape[-2:])
    index = _flat_indices(corners, patch_shape, object_shape)
    patches = obj.reshape(*lead, -1).index_select(-1, index)
    patches = patches.reshape(*lead, corners.shape[0], *patch_shape)
    return patches.movedim(-3, batch_dim)


def extract_patches_adjoint(
    patches: Tensor, corners: Tensor, object_shape: tuple[int, int]
) -> Tensor:
    """Adjoint of :func:`extract_patches`: scatter-add ``[B, *lead, M1, M2]`` into the object."""
    patch_shape = tuple(patches.shape[-2:])
    lead = patches.shape[1:-2]
    index = _flat_indices(corners, patch_shape, object_shape)
    values = patches.movedim(0, -3).reshape(*lead, -1)
    out = torch.zeros(
        *lead, object_shape[0] * object_shape[1], dtype=patches.dtype, device=patches.device
    )
    return out.index_add(-1, index, values).reshape(*lead, *object_shape)


def fourier_shift_ramp(shifts: Tensor, shape: tuple[int, int]) -> Tensor:
    """Phase ramps ``exp(-2 pi i (fx sx + fy sy))`` ``[B, M1, M2]`` for shifts ``[B, 2]`` [px]."""
    fx = torch.fft.fftfreq(shape[0], device=shifts.device, dtype=shifts.dtype)
    fy = torch.fft.fftfreq(shape[1], device=shifts.device, dtype=shifts.dtype)
    phase = (
        -2
        * math.pi
        * (
            fx[None, :, None] * shifts[:, 0, None, None]
            + fy[None, None, :] * shifts[:, 1, None, None]
        )
    )
    return torch.polar(torch.ones_like(phase), phase)


def fourier_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Shift ``x [*lead, M1, M2]`` periodically by ``shifts [B, 2]`` pixels: ``x(r - s)``.

    Returns ``[B, *lead, M1, M2]``. Unitary; its adjoint is the shift by ``-s`` (summed over B
    when ``x`` is shared).
    """
    ramp = fourier_shift_ramp(shifts, tuple(x.shape[-2:]))
    ramp = ramp.reshape(shifts.shape[0], *([1] * (x.dim() - 2)), *x.shape[-2:])
    return torch.fft.ifft2(torch.fft.fft2(x)[None] * ramp)


def scan_grid(
    start: tuple[float, float],
    step: tuple[float, float],
    n: tuple[int, int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Raster scan positions ``[n1 * n2, 2]`` [Å], x slow, y fast (``[scan_x, scan_y]`` order)."""
    x = start[0] + step[0] * torch.arange(n[0], device=device, dtype=dtype)
    y = start[1] + step[1] * torch.arange(n[1], device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(x, y, indexing="ij"), dim=-1).reshape(-1, 2)
