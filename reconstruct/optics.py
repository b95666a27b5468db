"""Electron optics: wavelength, interaction constant, grids, apertures, aberrations, probes.

Conventions (see ``docs/physics.md`` and ``/work/shared/CONVENTIONS.md``):

* lengths in Å, energies in eV, angles in **radians** (configs convert mrad at the boundary);
* arrays ``[x, y]``; spatial frequencies from ``torch.fft.fftfreq`` (unshifted, origin at 0);
* probe in Fourier space ``psi(k) = A(k) exp(-i chi(k))`` with abTEM's polar coefficients
  (``C10, C12, phi12, C21, ...``) and ``defocus = -C10``;
* a probe mode is normalised so that its far-field intensity ``|fft2(psi)|**2`` sums to 1
  (abTEM's "reciprocal_space" normalisation; then ``sum |psi(r)|**2 = 1 / (M1 * M2)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

# CODATA 2018 (h, e, c exact in SI since 2019).
_H = 6.62607015e-34  # J s
_E = 1.602176634e-19  # C
_C = 299792458.0  # m / s
_ME = 9.1093837015e-31  # kg

#: abTEM's polar aberration symbols, in the order abTEM lists them.
POLAR_SYMBOLS: tuple[str, ...] = (
    "C10", "C12", "phi12", "C21", "phi21", "C23", "phi23",
    "C30", "C32", "phi32", "C34", "phi34",
    "C41", "phi41", "C43", "phi43", "C45", "phi45",
    "C50", "C52", "phi52", "C54", "phi54", "C56", "phi56",
)  # fmt: skip

# (radial order n, [(magnitude, angle, azimuthal multiplicity m), ...]); angle None: m = 0.
_CHI_TERMS: tuple[tuple[int, tuple[tuple[str, str | None, int], ...]], ...] = (
    (2, (("C10", None, 0), ("C12", "phi12", 2))),
    (3, (("C21", "phi21", 1), ("C23", "phi23", 3))),
    (4, (("C30", None, 0), ("C32", "phi32", 2), ("C34", "phi34", 4))),
    (5, (("C41", "phi41", 1), ("C43", "phi43", 3), ("C45", "phi45", 5))),
    (6, (("C50", None, 0), ("C52", "phi52", 2), ("C54", "phi54", 4), ("C56", "phi56", 6))),
)

Coefficient = float | Tensor


def energy2wavelength(energy: float) -> float:
    """Relativistic electron wavelength [Å] for a kinetic energy ``energy`` [eV]."""
    if energy <= 0:
        raise ValueError(f"energy must be positive, got {energy} eV")
    return _H * _C / math.sqrt(energy * (2 * _ME * _C**2 / _E + energy)) / _E * 1e10


def energy2sigma(energy: float) -> float:
    """Relativistic interaction constant sigma [rad / (V Å)] for ``energy`` [eV].

    The phase of a slice of projected potential ``V`` [V Å] is ``sigma * V``.
    """
    mass = _ME * (1 + _E * energy / (_ME * _C**2))
    wavelength_m = energy2wavelength(energy) * 1e-10
    return 2 * math.pi * mass * _E * wavelength_m / _H**2 * 1e-10


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for complex64/float32, float64 for complex128/float64."""
    if dtype in (torch.float64, torch.complex128):
        return torch.float64
    return torch.float32


def spatial_frequencies(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Unshifted spatial frequencies [1/Å] of a real-space grid.

    Returns ``kx`` of shape ``[M1, 1]`` and ``ky`` of shape ``[1, M2]`` (broadcastable).
    """
    kx = torch.fft.fftfreq(shape[0], d=sampling[0], device=device, dtype=dtype)
    ky = torch.fft.fftfreq(shape[1], d=sampling[1], device=device, dtype=dtype)
    return kx[:, None], ky[None, :]


def polar_angles(kx: Tensor, ky: Tensor, wavelength: float) -> tuple[Tensor, Tensor]:
    """Scattering angle ``alpha = lambda |k|`` [rad] and azimuth ``phi`` [rad], ``[M1, M2]``."""
    alpha = torch.sqrt(kx**2 + ky**2) * wavelength
    phi = torch.atan2(ky.expand_as(alpha), kx.expand_as(alpha))
    return alpha, phi


def _coefficients(aberrations: Mapping[str, Coefficient] | None) -> dict[str, Coefficient]:
    """Validate coefficient names; map ``defocus`` to ``C10 = -defocus``."""
    coefficients: dict[str, Coefficient] = {}
    for name, value in (aberrations or {}).items():
        if name == "defocus":
            if "C10" in (aberrations or {}):
                raise ValueError("give either defocus or C10, not both")
            coefficients["C10"] = -value
        elif name in POLAR_SYMBOLS:
            coefficients[name] = value
        else:
            raise KeyError(f"unknown aberration coefficient {name!r}; use {POLAR_SYMBOLS}")
    return coefficients


def aberration_phase(
    alpha: Tensor, phi: Tensor, wavelength: float, aberrations: Mapping[str, Coefficient] | None
) -> Tensor:
    """Aberration function chi [rad], abTEM's polar expansion.

    ``chi = 2 pi / lambda * sum_n alpha**n / n * sum_m C_(n-1)m cos(m (phi - phi_(n-1)m))``.

    Args:
        alpha, phi: angles [rad], ``[M1, M2]``.
        wavelength: [Å].
        aberrations: ``{"C10": Å, "C12": Å, "phi12": rad, ...}`` or ``defocus`` [Å]
            (= -C10). Values may be tensors (learnable aberrations).
    Returns:
        chi, same shape and dtype as ``alpha``.
    """
    coefficients = _coefficients(aberrations)
    chi = torch.zeros_like(alpha)
    for order, terms in _CHI_TERMS:
        radial = None
        for magnitude, angle, multiplicity in terms:
            if magnitude not in coefficients:
                continue
            term = coefficients[magnitude] * (
                torch.cos(multiplicity * (phi - coefficients.get(angle, 0.0)))
                if angle is not None
                else 1.0
            )
            radial = term if radial is None else radial + term
        if radial is not None:
            chi = chi + alpha**order / order * radial
    return chi * (2 * math.pi / wavelength)


def aperture(
    alpha: Tensor,
    phi: Tensor,
    semiangle_cutoff: float,
    angular_sampling: tuple[float, float] | None = None,
) -> Tensor:
    """Condenser aperture ``A(k)`` (real, ``[M1, M2]``), abTEM-compatible.

    With ``angular_sampling`` (rad per pixel, ``(lambda/(M1 s1), lambda/(M2 s2))``) the edge is
    softened over one pixel like abTEM's ``Aperture(soft=True)``; without it the edge is hard
    (``alpha <= cutoff``). ``semiangle_cutoff`` in rad; ``inf`` gives ones.
    """
    if math.isinf(semiangle_cutoff):
        return torch.ones_like(alpha)
    if angular_sampling is None:
        return (alpha <= semiangle_cutoff).to(alpha.dtype)
    denominator = torch.sqrt(
        (torch.cos(phi) * angular_sampling[0]) ** 2 + (torch.sin(phi) * angular_sampling[1]) ** 2
    )
    denominator = denominator.clone()
    denominator[0, 0] = 1.0
    array = torch.clamp((semiangle_cutoff - alpha) / denominator + 0.5, 0.0, 1.0)
    array[0, 0] = 1.0
    return array


def fourier_probe(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    energy: float,
    semiangle_cutoff: float,
    aberrations: Mapping[str, Coefficient] | None = None,
    soft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Probe in Fourier space ``psi(k) = A(k) exp(-i chi(k))``, unshifted, ``[M1, M2]`` complex.

    Normalised so that ``sum |psi(k)|**2 = 1`` (unit far-field intensity).
    ``semiangle_cutoff`` in rad, ``sampling`` in Å, ``energy`` in eV.
    """
    wavelength = energy2wavelength(energy)
    kx, ky = spatial_frequencies(shape, sampling, device=device, dtype=dtype)
    alpha, phi = polar_angles(kx, ky, wavelength)
    angular = (wavelength / (shape[0] * sampling[0]), wavelength / (shape[1] * sampling[1]))
    amplitude = aperture(alpha, phi, semiangle_cutoff, angular if soft else None)
    chi = aberration_phase(alpha, phi, wavelength, aberrations)
    psi = torch.polar(amplitude, -chi)
    return psi / torch.sqrt((psi.abs() ** 2).sum())


def probe_from_aberrations(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    energy: float,
    semiangle_cutoff: float,
    aberrations: Mapping[str, Coefficient] | None = None,
    soft: bool = True,
    centered: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Real-space probe ``[M1, M2]`` complex; ``ifft2`` of :func:`fourier_probe`.

    ``centered=False`` puts the probe centre at pixel (0, 0) (the inverse FFT of the Fourier
    probe); ``centered=True`` (what the scanning code expects) rolls it to pixel
    ``(M1 // 2, M2 // 2)``. abTEM's ``Probe(...).build().array`` is centred at ``M / 2``: the
    same on an even grid, half a pixel further on an odd one (141.5 px on a 283 grid), so match
    it there with ``fourier_shift(probe, [[0.5, 0.5]])``. Normalisation:
    ``sum |fft2(psi)|**2 = 1``.
    """
    psi = torch.fft.ifft2(
        fourier_probe(shape, sampling, energy, semiangle_cutoff, aberrations, soft, device, dtype)
    )
    if centered:
        psi = torch.roll(psi, shifts=(shape[0] // 2, shape[1] // 2), dims=(-2, -1))
    return psi


def normalize_modes(modes: Tensor) -> Tensor:
    """Scale each mode ``[..., M1, M2]`` to ``sum |fft2(mode)|**2 = M1 M2 sum |mode|**2 = 1``."""
    n = modes.shape[-2] * modes.shape[-1]
    power = (modes.abs() ** 2).sum(dim=(-2, -1), keepdim=True) * n
    return modes / torch.sqrt(power)


def orthogonalize_modes(modes: Tensor) -> Tensor:
    """Orthogonalise probe modes ``[P, M1, M2]`` by SVD, sorted by decreasing power.

    The total incoherent intensity ``sum_i |psi_i|**2`` is preserved (it is the diagonal of the
    density matrix, which the SVD leaves unchanged).
    """
    p, m1, m2 = modes.shape
    u, s, vh = torch.linalg.svd(modes.reshape(p, m1 * m2), full_matrices=False)
    return (s[:, None].to(vh.dtype) * vh).reshape(p, m1, m2)


def probe_from_mean_pattern(
    patterns: Tensor,
    chi: Tensor | None = None,
    intensity: str = "max",
) -> Tensor:
    """Initial probe of paper 000 Algorithm 1 from the mean diffraction pattern.

    Args:
        patterns: measured patterns ``[K, M1, M2]``, fftshifted (zero frequency at ``M//2``)
            on the probe's own Fourier grid.
        chi: aberration surface chi0 [rad], unshifted ``[M1, M2]`` (e.g. from the defocus
            estimate), or None for a flat phase.
        intensity: ``"max"`` scales the probe to ``a_max = max_k ||I_k||_1`` (the paper's
            dose scale), ``"unit"`` to unit far-field intensity (CONVENTIONS.md).
    Returns:
        centred real-space probe ``[M1, M2]`` complex with ``|fft2(psi)|**2 ∝ mean pattern``.

    The paper writes the amplitude as ``I_mean``; the modulus of a probe whose far-field
    intensity is ``I_mean`` is ``sqrt(I_mean)``, which is what is used here, and the phase
    follows our sign ``exp(-i chi)``.
    """
    mean = torch.fft.ifftshift(patterns.mean(dim=0), dim=(-2, -1)).clamp_min(0)
    amplitude = torch.sqrt(mean)
    phase = torch.zeros_like(amplitude) if chi is None else -chi.to(amplitude.dtype)
    psi_k = torch.polar(amplitude, phase)
    psi_k = psi_k / torch.sqrt((psi_k.abs() ** 2).sum())
    if intensity == "max":
        psi_k = psi_k * torch.sqrt(patterns.sum(dim=(-2, -1)).max())
    elif intensity != "unit":
        raise ValueError("intensity must be 'max' or 'unit'")
    psi = torch.fft.ifft2(psi_k)
    shape = psi.shape
    return torch.roll(psi, shifts=(shape[-2] // 2, shape[-1] // 2), dims=(-2, -1))


def gram_schmidt(modes: Tensor) -> Tensor:
    """Orthonormalise modes ``[P, M1, M2]`` in order (mode 0 keeps its shape), unit norm."""
    p, m1, m2 = modes.shape
    q, r = torch.linalg.qr(modes.reshape(p, m1 * m2).transpose(0, 1))
    # Fix the phase so that mode 0 is a positive multiple of the input mode 0.
    signs = torch.sgn(torch.diagonal(r))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs[None, :]).transpose(0, 1).reshape(p, m1, m2)


def hermite_like_modes(probe: Tensor, n_modes: int) -> Tensor:
    """Mixed-state starting modes ``[P, M1, M2]``: ``probe * x**a * y**b``, ``a + b = 0, 1, ...``.

    Coordinates are in pixels relative to the probe's intensity centre; modes are then
    orthonormalised (Gram-Schmidt, mode 0 unchanged in shape) and scaled to unit intensity.
    """
    m1, m2 = probe.shape[-2:]
    rdtype = real_dtype(probe.dtype)
    weight = probe.abs() ** 2
    weight = weight / weight.sum()
    x = torch.arange(m1, device=probe.device, dtype=rdtype)[:, None]
    y = torch.arange(m2, device=probe.device, dtype=rdtype)[None, :]
    x = x - (weight * x).sum()
    y = y - (weight * y).sum()
    powers = [(a, order - a) for order in range(n_modes) for a in range(order + 1)][:n_modes]
    modes = torch.stack([probe * x**a * y**b for a, b in powers])
    return normalize_modes(gram_schmidt(modes))


class MixedProbe(nn.Module):
    """Mixed-state probe: ``P`` modes with learnable shapes and occupations.

    Parameters (real views, so ``module.to(dtype)`` is safe):
        ``modes_real`` ``[P, M1, M2, 2]``: mode shapes (normalised in :meth:`forward`);
        ``occupation_logits`` ``[P]``: occupations ``w = softmax(logits)``.
    :meth:`forward` returns effective modes ``sqrt(total * w_i) psi_i / ||psi_i||`` so that the
    incoherent far-field intensity ``sum_i |fft2(psi_i)|**2`` sums to ``total_intensity``.
    """

    def __init__(
        self,
        probe: Tensor,
        n_modes: int = 1,
        occupations: Tensor | None = None,
        total_intensity: float = 1.0,
        learn_occupations: bool = True,
    ) -> None:
        super().__init__()
        modes = probe[None] if probe.dim() == 2 else probe
        if modes.shape[0] != n_modes:
            modes = hermite_like_modes(modes[0], n_modes)
        if occupations is None:
            occupations = torch.full((n_modes,), 0.1 / max(n_modes - 1, 1))
            occupations[0] = 0.9 if n_modes > 1 else 1.0
        occupations = torch.as_tensor(occupations, dtype=real_dtype(modes.dtype))
        self.modes_real = nn.Parameter(torch.view_as_real(normalize_modes(modes)).clone())
        logits = torch.log(occupations / occupations.sum()).to(modes.device)
        self.occupation_logits = nn.Parameter(logits, requires_grad=learn_occupations)
        self.total_intensity = total_intensity

    @property
    def n_modes(self) -> int:
        return self.modes_real.shape[0]

    def occupations(self) -> Tensor:
        """Occupations ``[P]``, summing to 1."""
        return torch.softmax(self.occupation_logits, dim=0)

    def forward(self) -> Tensor:
        """Effective modes ``[P, M1, M2]`` complex (complex64 for float32 parameters)."""
        modes = normalize_modes(torch.view_as_complex(self.modes_real))
        scale = torch.sqrt(self.occupations() * self.total_intensity)
        return modes * scale[:, None, None].to(modes.dtype)

    @torch.no_grad()
    def orthogonalize_(self) -> None:
        """Projection hook: SVD-orthogonalise the effective modes, re-derive occupations."""
        modes = orthogonalize_modes(self.forward())
        power = (modes.abs() ** 2).sum(dim=(-2, -1))
        self.modes_real.copy_(torch.view_as_real(normalize_modes(modes)))
        self.occupation_logits.copy_(torch.log(power / power.sum()))
