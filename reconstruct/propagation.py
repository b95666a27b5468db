"""Fresnel propagation with specimen tilt, slice transmission, antialiasing.

Sign conventions (fixed by ``tests/test_reconstruct_abtem.py`` against abTEM 1.0):

* forward FFT ``torch.fft.fft2`` (numpy/abTEM convention, ``exp(-2 pi i k.r)``);
* propagation downstream by ``dz`` multiplies the wave's spectrum by
  ``P(k; dz, theta) = exp[-i pi dz (lambda |k|**2 - 2 kx tan(theta_x) - 2 ky tan(theta_y))]``;
* ``theta = (theta_x, theta_y)`` [rad] is the specimen mistilt: the direction of the specimen's
  z axis (its zone axis) in the lab frame is ``(tan theta_x, tan theta_y, 1)``. A specimen
  rotated by ``R_y(a)`` (right-handed about +y) has ``theta_x = a``; by ``R_x(b)``,
  ``theta_y = -b`` (first order in the angle). abTEM's beam tilt is ``-theta``.
* transmission ``t = exp(i sigma V - sigma V_abs)`` with ``V, V_abs`` projected potentials [V Å].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .optics import energy2sigma, energy2wavelength, spatial_frequencies

#: abTEM's default antialias cutoff (fraction of Nyquist) and taper (config values).
ANTIALIAS_CUTOFF = 0.6666666
ANTIALIAS_TAPER = 0.01


def antialias_aperture(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    cutoff: float = ANTIALIAS_CUTOFF,
    taper: float = ANTIALIAS_TAPER,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """abTEM's antialias aperture ``[M1, M2]`` (real, unshifted): 1 inside ``cutoff`` x Nyquist.

    ``k_cut = cutoff / (2 max(sampling))`` with a cosine taper of width ``taper / max(sampling)``.
    """
    k_cut = cutoff / max(sampling) / 2
    width = taper / max(sampling)
    kx, ky = spatial_frequencies(shape, sampling, device=device, dtype=dtype)
    k = torch.sqrt(kx**2 + ky**2)
    if width <= 0:
        return (k < k_cut).to(dtype)
    tapered = 0.5 * (1 + torch.cos(math.pi * (k - k_cut + width) / width))
    tapered = torch.where(k > k_cut, torch.zeros_like(k), tapered)
    return torch.where(k > k_cut - width, tapered, torch.ones_like(k))


def fresnel_propagator(
    kx: Tensor,
    ky: Tensor,
    wavelength: float,
    thickness: float | Tensor,
    tilt: Tensor | None = None,
) -> Tensor:
    """Fresnel propagator with tilt (paper 002 eq. 3), complex.

    Args:
        kx, ky: spatial frequencies [1/Å], ``[M1, 1]`` and ``[1, M2]``.
        wavelength: [Å].
        thickness: propagation distance dz [Å], float or tensor of shape ``[*T]``.
        tilt: specimen tilt ``[*B, 2]`` [rad] (``theta_x, theta_y``) or None.
    Returns:
        ``P`` of shape ``broadcast([*T], [*B]) + [M1, M2]``.
    """
    dz = torch.as_tensor(thickness, dtype=kx.dtype, device=kx.device)[..., None, None]
    phase = -math.pi * dz * wavelength * (kx**2 + ky**2)
    if tilt is not None:
        tan = torch.tan(tilt)
        ramp = kx * tan[..., 0, None, None] + ky * tan[..., 1, None, None]
        phase = phase + 2 * math.pi * dz * ramp
    return torch.polar(torch.ones_like(phase), phase)


def propagate(wave: Tensor, propagator: Tensor) -> Tensor:
    """``ifft2(fft2(wave) * propagator)``; shapes broadcast over the last two axes."""
    return torch.fft.ifft2(torch.fft.fft2(wave) * propagator)


def bandlimit(x: Tensor, mask: Tensor) -> Tensor:
    """Multiply the spectrum of ``x [..., M1, M2]`` by ``mask [M1, M2]`` (unshifted)."""
    return torch.fft.ifft2(torch.fft.fft2(x) * mask)


def transmission(potential: Tensor, sigma: float, absorption: Tensor | None = None) -> Tensor:
    """Slice transmission ``exp(i sigma V - sigma V_abs)``, complex, same shape as ``V``.

    ``potential`` and ``absorption`` are projected potentials [V Å]; ``sigma`` [rad/(V Å)].
    """
    phase = sigma * potential
    modulus = torch.ones_like(phase) if absorption is None else torch.exp(-sigma * absorption)
    return torch.polar(modulus, phase)


class SlicedObject(nn.Module):
    """Object as projected-potential slices with optional absorption and object states.

    Parameters: ``potential`` ``[O, S, N1, N2]`` [V Å] (O object states, paper 003; S slices),
    optionally ``absorption`` (same shape, [V Å]). :meth:`forward` returns the transmission
    ``[O, S, N1, N2]`` complex, bandlimited by abTEM's antialias aperture if ``antialias``.
    """

    def __init__(
        self,
        potential: Tensor | np.ndarray,
        energy: float,
        sampling: tuple[float, float],
        absorption: bool | Tensor = False,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(potential, Tensor):  # e.g. abTEM's Potential.build().array
            try:
                potential = torch.as_tensor(np.asarray(potential, dtype=np.float32))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"SlicedObject potential must be a tensor or an array of "
                                f"numbers [O, S, N1, N2] or [S, N1, N2] (V Å), got "
                                f"{type(potential).__name__}") from exc
        if potential.dim() not in (3, 4):
            raise ValueError(f"SlicedObject potential must be [O, S, N1, N2] or [S, N1, N2] "
                             f"(V Å), got shape {tuple(potential.shape)}")
        potential = potential[None] if potential.dim() == 3 else potential
        self.potential = nn.Parameter(potential.clone())
        if isinstance(absorption, Tensor):
            absorption_tensor: Tensor | None = absorption.expand_as(potential).clone()
        else:
            absorption_tensor = torch.zeros_like(potential) if absorption else None
        self.absorption = None if absorption_tensor is None else nn.Parameter(absorption_tensor)
        self.sigma = energy2sigma(energy)
        self.sampling = sampling
        mask = antialias_aperture(
            tuple(potential.shape[-2:]), sampling, device=potential.device, dtype=potential.dtype
        )
        self.register_buffer("mask", mask if antialias else None)

    def forward(self) -> Tensor:
        """Transmission ``[O, S, N1, N2]`` complex."""
        t = transmission(self.potential, self.sigma, self.absorption)
        return t if self.mask is None else bandlimit(t, self.mask)


class Propagator(nn.Module):
    """Propagators between slices with learnable thickness and tilt.

    Parameters: ``slice_thickness`` ``[]`` (one for all slices), ``[S]`` (per slice) or
    ``[K, 1]`` (one per scan position, shared by its slices: a thickness map) [Å]; ``tilt``
    ``[2]`` (one per dataset) or ``[K, 2]`` (one per scan position) [rad]. Buffers: ``kx [M1,
    1]``, ``ky [1, M2]`` [1/Å] and the antialias ``mask [M1, M2]`` (abTEM multiplies its
    propagator by it).

    ``centre_depth`` [Å] (optional) places the sliced slab with its middle at that depth below
    the plane where the probe's defocus is defined (the entrance of the simulation cell):
    :meth:`entrance` then returns the free-space propagator over the distance from that plane
    to the first slice, ``centre_depth - (S - 1) dz / 2``, which follows a learned thickness.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        sampling: tuple[float, float],
        energy: float,
        slice_thickness: float | Tensor,
        tilt: Tensor | None = None,
        antialias: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        centre_depth: float | None = None,
    ) -> None:
        super().__init__()
        self.wavelength = energy2wavelength(energy)
        kx, ky = spatial_frequencies(shape, sampling, device=device, dtype=dtype)
        self.register_buffer("kx", kx)
        self.register_buffer("ky", ky)
        mask = antialias_aperture(shape, sampling, device=device, dtype=dtype)
        self.register_buffer("mask", mask if antialias else None)
        thickness = torch.as_tensor(slice_thickness, dtype=dtype, device=device).clone()
        if thickness.dim() == 2 and thickness.shape[1] != 1:
            raise ValueError(f"a per-position slice thickness is [K, 1], got "
                             f"{tuple(thickness.shape)}")
        self.slice_thickness = nn.Parameter(thickness)
        tilt = torch.zeros(2, dtype=dtype, device=device) if tilt is None else tilt.clone()
        self.tilt = nn.Parameter(tilt.to(device=device, dtype=dtype))
        self.centre_depth = centre_depth

    @property
    def per_position_tilt(self) -> bool:
        return self.tilt.dim() == 2

    @property
    def per_position_thickness(self) -> bool:
        return self.slice_thickness.dim() == 2

    def thickness(self, n_slices: int, indices: Tensor | None = None) -> Tensor:
        """Slice thicknesses [Å]: ``[S]``, or ``[B, S]`` for a thickness map."""
        dz = self.slice_thickness
        if self.per_position_thickness:
            dz = dz if indices is None else dz[indices]
            return dz.expand(-1, n_slices)
        return dz.expand(n_slices) if dz.dim() == 0 else dz

    def tilts(self, indices: Tensor | None = None) -> Tensor:
        """The tilt [rad]: ``[2]``, or ``[B, 2]`` for a tilt map."""
        if self.per_position_tilt and indices is not None:
            return self.tilt[indices]
        return self.tilt

    def forward(self, n_slices: int, indices: Tensor | None = None) -> Tensor:
        """Propagators for the ``n_slices`` slice steps.

        Returns ``[S, M1, M2]`` for a dataset tilt and thickness, or ``[B, S, M1, M2]`` for a
        tilt map or a thickness map (``indices [B]`` select the scan positions).
        """
        dz, tilt = self.thickness(n_slices, indices), self.tilts(indices)
        if tilt.dim() == 2:
            tilt = tilt[:, None, :]  # [B, 1, 2] against the slices
            dz = dz if dz.dim() == 2 else dz[None]
        elif dz.dim() == 2:
            tilt = tilt[None, None]
        prop = fresnel_propagator(self.kx, self.ky, self.wavelength, dz, tilt)
        return prop if self.mask is None else prop * self.mask

    def entrance(self, n_slices: int, indices: Tensor | None = None) -> Tensor | None:
        """Free-space propagator ``[M1, M2]`` (``[B, M1, M2]`` for a thickness map) from the
        defocus reference plane to the first slice, or None without ``centre_depth``."""
        if self.centre_depth is None:
            return None
        distance = self.centre_depth - self.pivot(n_slices, indices)
        return fresnel_propagator(self.kx, self.ky, self.wavelength, distance)

    def pivot(self, n_slices: int, indices: Tensor | None = None) -> Tensor:
        """Depth of the slab's middle below the first slice, ``(S - 1) dz / 2`` [Å] (``[]`` or
        ``[B]``): where a tilt leaves the scan positions in place."""
        return self.thickness(n_slices, indices)[..., :-1].sum(-1) / 2
