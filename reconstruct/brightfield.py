"""Tilt-corrected bright field (tcBF): the defocus of an uncalibrated 4D-STEM scan.

Each detector pixel ``k`` inside the bright-field disc records a virtual image of the
specimen that a defocused probe displaces by the parallax ``s(k) = λ Δf k`` [Å] (``Δf`` the
defocus in this suite's convention, ``C10 = -Δf``, positive = underfocus; ``k`` in 1/Å).
Shifting every pixel's image back by ``-s(k)`` and summing gives the tcBF image, whose phase
contrast is greatest at the true defocus: a wrong ``Δf`` sums misregistered images and blurs
them. :func:`estimate_defocus` maximises that contrast (paper 000, stage (a): the defocus that
maximises the contrast of the bright-field phase image seeds the probes). Unlike SSB it needs
no Nyquist-sampled scan.

Shapes: ``patterns [P, n1, n2]`` (k = 0 at ``n // 2``, per incident electron) on a raster of
``[sx, sy]`` positions (x slow); images ``[K, sx, sy]`` of ``K`` bright-field pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reconstruct.scanning import fourier_shift_ramp, raster_shape


def bright_field_images(patterns: Tensor, positions: Tensor, k_sampling: tuple[float, float],
                        semiangle: float, wavelength: float, fraction: float = 0.85,
                        ) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Virtual images of the detector pixels within ``fraction`` of the bright-field disc.

    ``positions [P, 2]`` Å (a raster), ``k_sampling`` 1/Å per detector pixel, ``semiangle``
    rad. Returns ``images [K, sx, sy]`` (each divided by its mean), ``k [K, 2]`` 1/Å and the
    scan ``step`` (Å, x and y)."""
    sx, sy = raster_shape(positions)
    n1, n2 = patterns.shape[-2:]
    k1 = (torch.arange(n1, device=patterns.device) - n1 // 2) * k_sampling[0]
    k2 = (torch.arange(n2, device=patterns.device) - n2 // 2) * k_sampling[1]
    kx, ky = torch.meshgrid(k1, k2, indexing="ij")
    inside = kx**2 + ky**2 < (fraction * semiangle / wavelength) ** 2
    if int(inside.sum()) < 3:
        raise ValueError("fewer than 3 detector pixels inside the bright-field disc")
    images = patterns[:, inside].T.reshape(-1, sx, sy).to(torch.float64)
    images = images / images.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    grid = positions.reshape(sx, sy, 2)
    step = (float(grid[min(1, sx - 1), 0, 0] - grid[0, 0, 0]) or 1.0,
            float(grid[0, min(1, sy - 1), 1] - grid[0, 0, 1]) or 1.0)
    k = torch.stack([kx[inside], ky[inside]], -1).to(torch.float64)
    return images, k, step


def parallax_image(images: Tensor, k: Tensor, defocus: float, wavelength: float,
                   step: tuple[float, float]) -> Tensor:
    """The tcBF image ``[sx, sy]``: the mean of ``images [K, sx, sy]``, each shifted back by
    its parallax ``λ Δf k`` (Å → scan pixels by ``step``; periodic Fourier shift)."""
    px = wavelength * defocus * k / k.new_tensor(step)  # [K, 2] scan pixels
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    ramps = fourier_shift_ramp(-px, tuple(images.shape[-2:]))  # one shift per image
    return torch.fft.ifft2(torch.fft.fft2(centred) * ramps).real.mean(0)


def image_contrast(image: Tensor, margin: int = 0) -> float:
    """Standard deviation of ``image [sx, sy]`` inside a ``margin``-pixel border."""
    core = image[margin:image.shape[0] - margin, margin:image.shape[1] - margin]
    return float(core.std()) if core.numel() > 1 else 0.0


@dataclass
class DefocusEstimate:
    """``defocus`` Å (the maximum), and the contrast ``curve`` ``[N]`` at ``candidates [N]`` Å."""

    defocus: float
    candidates: Tensor
    curve: Tensor
    image: Tensor


def estimate_defocus(patterns: Tensor, positions: Tensor, k_sampling: tuple[float, float],
                     semiangle: float, wavelength: float, search: float = 500.0,
                     n_candidates: int = 51, margin: int = 0) -> DefocusEstimate:
    """The defocus in ``[-search, search]`` Å that maximises the tcBF contrast: a grid of
    ``n_candidates`` values, then a parabola through the best one and its neighbours.
    Arguments as :func:`bright_field_images`; ``margin`` scan pixels left out of the contrast
    (edges that a partial raster wraps)."""
    if search <= 0 or n_candidates < 3:
        raise ValueError(f"search {search} must be > 0 Å and n_candidates {n_candidates} >= 3")
    images, k, step = bright_field_images(patterns, positions, k_sampling, semiangle, wavelength)
    candidates = torch.linspace(-search, search, n_candidates, dtype=torch.float64)
    curve = torch.tensor([image_contrast(parallax_image(images, k, float(d), wavelength, step),
                                         margin) for d in candidates], dtype=torch.float64)
    best = int(curve.argmax())
    defocus = float(candidates[best])
    if 0 < best < n_candidates - 1:
        a, b, c = (float(v) for v in curve[best - 1:best + 2])
        denom = a - 2 * b + c
        if denom < 0:
            defocus += 0.5 * (a - c) / denom * float(candidates[1] - candidates[0])
    image = parallax_image(images, k, defocus, wavelength, step)
    return DefocusEstimate(defocus, candidates, curve, image)
