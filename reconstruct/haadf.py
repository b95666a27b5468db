"""HAADF depth-dependent interaction (paper 004 eqs. 4, 7-10).

The image of tilt ``j`` is ``I_j = sum_k p_jk (*) O_jk`` (eq. 4): slice ``k``'s projection
``O_jk [X, Y]`` convolved (circularly, FFT) with the probe intensity ``p_jk`` at that slice's
depth. Kernels are stored unshifted (probe centre at pixel (0, 0)) and normalised to unit sum,
so a point-like probe reduces to the direct projection ``p = 1`` (sum over slices).

Modes: ``direct`` (no convolution), ``rigid`` (fixed kernels from the optics), ``adaptive``
(learnable kernels initialised from the optics).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .data import TomoData
from .optics import energy2wavelength, fourier_probe, spatial_frequencies
from .propagation import fresnel_propagator

MODES = ("direct", "rigid", "adaptive")
PROBE_MODELS = ("pixels", "optics")


def depth_probe_kernels(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    energy: float,
    semiangle_cutoff: float,
    depths: Tensor,
    aberrations: dict | None = None,
    oversample: int = 1,
) -> Tensor:
    """Probe intensities ``[n, X, Y]`` at ``depths [n]`` [Å] below the entrance plane (eq. 10).

    ``psi_z = ifft2(psi(k) P(k; z))`` with our Fresnel propagator sign (downstream positive;
    the paper's ``exp(+i pi lambda z k**2)`` is the opposite FFT convention). Each kernel is
    centred at pixel (0, 0) and normalised to unit sum. ``semiangle_cutoff`` in rad.

    ``oversample`` (odd): the intensity is computed on a grid ``oversample`` times finer and
    integrated over each output pixel (blocks centred on the pixel), so that a pixel coarser
    than the intensity's band limit ``lambda / (4 alpha)`` does not alias it;
    :func:`kernel_oversampling` gives the factor that avoids aliasing.
    """
    fine = fine_probe(shape, sampling, energy, semiangle_cutoff, aberrations, oversample,
                      depths.device, depths.dtype)
    psi_k, kx, ky = fine
    waves = psi_k * fresnel_propagator(kx, ky, energy2wavelength(energy), depths)
    return fine_intensities(waves, shape, oversample)


def fine_probe(shape: tuple[int, int], sampling: tuple[float, float], energy: float,
               semiangle_cutoff: float, aberrations: dict | None, oversample: int,
               device: torch.device | str | None, dtype: torch.dtype
               ) -> tuple[Tensor, Tensor, Tensor]:
    """The Fourier probe ``[fX, fY]`` and its frequencies ``kx [fX, 1]``, ``ky [1, fY]`` on
    the ``oversample`` (odd) times finer grid of :func:`depth_probe_kernels`."""
    if oversample < 1 or oversample % 2 == 0:
        raise ValueError(f"oversample must be an odd integer >= 1, got {oversample}")
    f = oversample
    fine, fine_sampling = (shape[0] * f, shape[1] * f), (sampling[0] / f, sampling[1] / f)
    psi_k = fourier_probe(fine, fine_sampling, energy, semiangle_cutoff, aberrations,
                          device=device, dtype=dtype)
    kx, ky = spatial_frequencies(fine, fine_sampling, device=device, dtype=dtype)
    return psi_k, kx, ky


def fine_intensities(waves_k: Tensor, shape: tuple[int, int], oversample: int) -> Tensor:
    """Unit-sum intensities ``[n, X, Y]`` of the fine Fourier-space waves ``[n, fX, fY]``,
    each ``oversample``-block (centred on its output pixel) summed."""
    f = oversample
    intensity = torch.fft.ifft2(waves_k).abs() ** 2
    if f > 1:  # block [i f - f//2, i f + f//2] integrates output pixel i (centre at 0)
        intensity = torch.roll(intensity, (f // 2, f // 2), dims=(-2, -1))
        intensity = intensity.reshape(-1, shape[0], f, shape[1], f).sum((-3, -1))
    return intensity / intensity.sum(dim=(-2, -1), keepdim=True)


def kernel_oversampling(sampling: float, energy: float, semiangle_cutoff: float) -> int:
    """The smallest odd factor that samples the probe intensity (band limit ``2 alpha /
    lambda``) at or below Nyquist: pixel ``<= lambda / (4 alpha)``; ``sampling`` in Å."""
    nyquist = energy2wavelength(energy) / (4 * semiangle_cutoff)
    f = max(1, math.ceil(sampling / nyquist))
    return f if f % 2 else f + 1


def ddi_forward(slices: Tensor, kernels: Tensor | None, kernels_ft: Tensor | None = None
                ) -> Tensor:
    """Depth-dependent interaction: ``[T, n, X, Y]`` slices -> ``[T, X, Y]`` images.

    ``kernels``: ``[n, X, Y]`` or ``[T, n, X, Y]`` (unshifted, real), or None for ``p = 1``;
    ``kernels_ft`` their ``fft2`` if already computed (then ``kernels`` is not read).
    """
    if kernels is None and kernels_ft is None:
        return slices.sum(dim=-3)
    ft = torch.fft.fft2(kernels) if kernels_ft is None else kernels_ft
    spectrum = torch.fft.fft2(slices) * ft
    return torch.fft.ifft2(spectrum.sum(dim=-3)).real


def ddi_adjoint(images: Tensor, kernels: Tensor | None, n_slices: int) -> Tensor:
    """Adjoint of :func:`ddi_forward` in the slices: ``[T, X, Y]`` -> ``[T, n, X, Y]``."""
    if kernels is None:
        return images.unsqueeze(-3).expand(*images.shape[:-2], n_slices, *images.shape[-2:])
    spectrum = torch.fft.fft2(images).unsqueeze(-3) * torch.fft.fft2(kernels).conj()
    return torch.fft.ifft2(spectrum).real


class DepthDependentInteraction(nn.Module):
    """HAADF image model of paper 004 with ``mode`` in :data:`MODES`.

    ``kernels [n, X, Y]`` (or ``[T, n, X, Y]``) from :func:`depth_probe_kernels`; a buffer in
    ``rigid`` mode, a Parameter (group ``"probe"``) in ``adaptive`` mode, unused in ``direct``.
    With ``optics`` (adaptive only, ``kernels`` None) the kernels come from
    :class:`OpticalDepthKernels`, whose parameters are the probe group.
    """

    def __init__(self, mode: str, kernels: Tensor | None = None,
                 optics: OpticalDepthKernels | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode != "direct" and kernels is None and optics is None:
            raise ValueError(f"mode {mode!r} needs probe kernels")
        if optics is not None and mode != "adaptive":
            raise ValueError("optical kernels are learnable: mode must be 'adaptive'")
        self.mode, self.optics = mode, optics
        if mode == "adaptive" and optics is None:
            self.kernels = nn.Parameter(kernels.clone())
        else:
            self.register_buffer("kernels", None if kernels is None else kernels.clone())
        fixed = None if mode != "rigid" else torch.fft.fft2(kernels)
        self.register_buffer("kernels_ft", fixed, persistent=False)

    def probe_parameters(self) -> list[nn.Parameter]:
        """The learnable probe parameters (group ``probe``): none unless adaptive."""
        if self.mode != "adaptive":
            return []
        return [self.kernels] if self.optics is None else list(self.optics.parameters())

    def forward(self, slices: Tensor) -> Tensor:
        """``[T, n, X, Y]`` projected slices -> ``[T, X, Y]`` images."""
        if self.mode == "direct":
            return ddi_forward(slices, None)
        if self.optics is not None:
            return ddi_forward(slices, None, self.optics().to(slices.dtype.to_complex()))
        return ddi_forward(slices, self.kernels, self.kernels_ft)


def build_interaction(data: TomoData, mode: str, shape: tuple[int, int], pixel: float,
                      n_slices: int, probe_model: str = "optics") -> DepthDependentInteraction:
    """The interaction of ``mode``; kernels of the ADF scan's probe (its own defocus when it
    had one) at the slices' centre depths below the cell entrance (where the defocus refers
    to), integrated over the pixel. Adaptive kernels are free pixels within
    :func:`kernel_support` (``probe_model`` ``pixels``) or :class:`OpticalDepthKernels`
    (``optics``: a learnable defocus and per-depth blur)."""
    if probe_model not in PROBE_MODELS:
        raise ValueError(f"probe_model must be one of {PROBE_MODELS}, got {probe_model!r}")
    if mode == "direct":
        return DepthDependentInteraction("direct").to(data.device)
    dz = data.volume_shape[0] * data.voxel_size / n_slices
    depths = (torch.arange(n_slices, device=data.device, dtype=torch.float64) + 0.5) * dz
    f = kernel_oversampling(pixel, data.energy, data.semiangle)
    aberrations = data.aberrations if data.adf_aberrations is None else data.adf_aberrations
    if mode == "adaptive" and probe_model == "optics":
        optics = OpticalDepthKernels(shape, pixel, data.energy, data.semiangle, depths.float(),
                                     aberrations, f)
        return DepthDependentInteraction(mode, None, optics).to(data.device)
    kernels = depth_probe_kernels(shape, (pixel, pixel), data.energy, data.semiangle, depths,
                                  aberrations, oversample=f)
    interaction = DepthDependentInteraction(mode, kernels.float()).to(data.device)
    if mode == "adaptive":
        interaction.register_buffer("support", kernel_support(kernels, pixel).float())
    return interaction


class OpticalDepthKernels(nn.Module):
    """Adaptive DDI kernels that stay probes: :func:`depth_probe_kernels` at a learnable
    defocus, each depth's intensity blurred by a learnable Gaussian of standard deviation
    ``blur [n]`` Å per axis (beam spreading the free-space probe leaves out: scattering in the
    specimen, source size). ``forward() -> [n, X, Y]`` the kernels' ``fft2`` (unit sum, centred
    at pixel (0, 0)).

    Parameters (one Adam rate serves both): ``defocus_nm``, the change of the defocus
    (``-C10``) in nm, positive moving the focus down into the specimen (the kernel at depth
    ``z`` becomes the free-space one at ``z - 10 defocus_nm``); ``blur`` in Å, starting at
    ``blur_start`` (0.05 Å: a variance of 0.0025 Å², negligible beside the kernels' ~1 Å²,
    but off the zero where its gradient vanishes).
    """

    def __init__(self, shape: tuple[int, int], pixel: float, energy: float, semiangle: float,
                 depths: Tensor, aberrations: dict | None, oversample: int,
                 blur_start: float = 0.05) -> None:
        super().__init__()
        self.shape, self.oversample = shape, oversample
        self.wavelength = energy2wavelength(energy)
        psi_k, kx, ky = fine_probe(shape, (pixel, pixel), energy, semiangle, aberrations,
                                   oversample, depths.device, depths.dtype)
        # the fine waves at each depth, [n, fX, fY] (a defocus change multiplies them all by
        # one propagator), and the fine frequencies for that propagator
        waves = psi_k * fresnel_propagator(kx, ky, self.wavelength, depths)
        for name, value in (("waves", waves), ("kx", kx), ("ky", ky)):
            self.register_buffer(name, value)
        qx, qy = spatial_frequencies(shape, (pixel, pixel), device=depths.device,
                                     dtype=depths.dtype)
        self.register_buffer("q2", qx**2 + qy**2)  # [X, Y] 1/Å²
        self.defocus_nm = nn.Parameter(torch.zeros((), dtype=depths.dtype, device=depths.device))
        self.blur = nn.Parameter(torch.full_like(depths, blur_start))

    def forward(self) -> Tensor:
        # a defocus change D is a propagation by -D (the C10 phase is the Fresnel phase)
        shift = fresnel_propagator(self.kx, self.ky, self.wavelength, -10 * self.defocus_nm)
        kernels = fine_intensities(self.waves * shift, self.shape, self.oversample)
        variance = self.blur.square()[:, None, None]
        return torch.fft.fft2(kernels) * torch.exp(-2 * math.pi**2 * variance * self.q2)


def kernel_support(kernels: Tensor, pixel: float) -> Tensor:
    """Mask ``[n, X, Y]`` of the pixels an adaptive kernel may use: within ``3 sqrt(<r²>) +
    1 Å`` of its centre (its starting second moment), so that the optimisation cannot spread
    a kernel into a pedestal that fits noise."""
    x = torch.fft.fftfreq(kernels.shape[-2], 1 / kernels.shape[-2]).to(kernels) * pixel
    y = torch.fft.fftfreq(kernels.shape[-1], 1 / kernels.shape[-1]).to(kernels) * pixel
    r2 = x[:, None] ** 2 + y[None] ** 2
    radius = 3 * (kernels * r2).sum((-2, -1)).sqrt() + 1.0  # [n] Å
    return r2 <= radius[:, None, None] ** 2
