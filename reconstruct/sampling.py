"""Bilinear sampling of images at scan positions (periodic), with its exact adjoint.

Used by the linear tomography baselines to compare projections on the voxel grid with ADF
images recorded at scan positions. Image pixel ``[i, j]`` is at ``(i, j)`` in pixel units.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _corners(coords: Tensor, shape: tuple[int, int]) -> tuple[list[Tensor], list[Tensor]]:
    """Flat indices ``[4][T, P]`` of the 4 neighbours and their bilinear weights."""
    floor = torch.floor(coords)
    frac = coords - floor
    i0, j0 = floor[..., 0].long(), floor[..., 1].long()
    fx, fy = frac[..., 0], frac[..., 1]
    nx, ny = shape
    idx, w = [], []
    for di, dj, wx, wy in ((0, 0, 1 - fx, 1 - fy), (1, 0, fx, 1 - fy), (0, 1, 1 - fx, fy),
                           (1, 1, fx, fy)):
        idx.append(((i0 + di) % nx) * ny + (j0 + dj) % ny)
        w.append(wx * wy)
    return idx, w


def sample_bilinear(image: Tensor, coords: Tensor) -> Tensor:
    """Values of ``image [T, X, Y]`` at ``coords [T, P, 2]`` (pixel units, periodic): ``[T, P]``.

    Linear in ``image``; differentiable in ``image`` and ``coords``.
    """
    t, nx, ny = image.shape
    flat = image.reshape(t, nx * ny)
    idx, w = _corners(coords, (nx, ny))
    return sum(torch.gather(flat, 1, i) * wi for i, wi in zip(idx, w, strict=True))


def sample_bilinear_adjoint(values: Tensor, coords: Tensor, shape: tuple[int, int]) -> Tensor:
    """Adjoint of :func:`sample_bilinear` in the image: splat ``values [T, P]`` → ``[T, X, Y]``."""
    t = values.shape[0]
    out = torch.zeros(t, shape[0] * shape[1], dtype=values.dtype, device=values.device)
    idx, w = _corners(coords, shape)
    for i, wi in zip(idx, w, strict=True):
        out = out.scatter_add(1, i, values * wi)
    return out.reshape(t, *shape)


def fast_size(n: int, primes: tuple[int, ...] = (2, 3, 5, 7)) -> int:
    """The smallest ``m >= n`` with no prime factor outside ``primes`` (a fast FFT length;
    e.g. 146 = 2 x 73 is about 5x slower than 150)."""
    m = n
    while True:
        k = m
        for p in primes:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1
