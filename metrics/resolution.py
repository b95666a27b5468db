"""Resolution metrics: FSC / FRC, their thresholds, radial power spectrum, information limit.

Shells: with ``N = min(shape)`` and spacing ``v`` (Å), the shell width is ``dk = 1 / (N v)``
(1/Å); a Fourier sample at ``|k|`` belongs to shell ``round(|k| / dk)``, whose frequency is
``s * dk``. Shells run from 0 (DC) to ``N // 2`` (Nyquist, ``1 / (2 v)``); the corners beyond
Nyquist are ignored. Real FFTs are used; ``n_voxels`` counts the full (Hermitian) Fourier space.

FSC (CONVENTIONS.md): ``Re sum_shell F1 F2* / sqrt(sum |F1|^2 sum |F2|^2)``. The resolution is
the period ``1 / k`` in Å at the first crossing below the threshold, searched from shell 1 (the
DC shell is skipped), linearly interpolated between shells. A curve already below the
threshold at shell 1 gives ``1 / k_1 = N v``; a curve that never crosses gives the Nyquist
period ``2 v`` and ``crossed = False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from metrics.grid import ArrayLike, check_grid, check_positive


def half_bit_threshold(n_voxels: np.ndarray) -> np.ndarray:
    """van Heel & Schatz half-bit threshold ``(0.2071 + 1.9102/√n) / (1.2071 + 0.9102/√n)``."""
    s = np.sqrt(np.asarray(n_voxels, dtype=np.float64))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def one_bit_threshold(n_voxels: np.ndarray) -> np.ndarray:
    """van Heel & Schatz one-bit threshold ``(0.5 + 2.4142/√n) / (1.5 + 1.4142/√n)``."""
    s = np.sqrt(np.asarray(n_voxels, dtype=np.float64))
    return (0.5 + 2.4142 / s) / (1.5 + 1.4142 / s)


def _shells(shape: tuple[int, ...], spacing: float) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Shell index and Hermitian weight of every rfftn sample, the shell width, the shell count.

    Returns ``(shell [rfft shape] int, weight [rfft shape], dk 1/Å, n_shells)``.
    """
    n_min = min(shape)
    dk = 1.0 / (n_min * spacing)
    axes = [sfft.fftfreq(n, d=spacing) for n in shape[:-1]] + [sfft.rfftfreq(shape[-1], spacing)]
    k2 = np.zeros([len(a) for a in axes])
    for ax, f in enumerate(axes):
        k2 = k2 + (f**2).reshape([-1 if i == ax else 1 for i in range(len(axes))])
    shell = np.rint(np.sqrt(k2) / dk).astype(np.intp)
    last = np.full(len(axes[-1]), 2.0)
    last[0] = 1.0
    if shape[-1] % 2 == 0:
        last[-1] = 1.0
    weight = np.broadcast_to(last, shell.shape)
    return shell, weight, dk, n_min // 2 + 1


@dataclass
class FourierCorrelation:
    """FSC (3D) or FRC (2D) curve.

    Attributes:
        frequency: ``[S]`` shell frequencies in 1/Å (shell 0 is DC).
        correlation: ``[S]`` correlation per shell (NaN where a shell has no power).
        n_voxels: ``[S]`` Fourier samples per shell (full Fourier space).
        half_bit, one_bit: ``[S]`` van Heel & Schatz thresholds for the shell sizes.
    """

    frequency: np.ndarray
    correlation: np.ndarray
    n_voxels: np.ndarray
    half_bit: np.ndarray
    one_bit: np.ndarray

    def resolution(self, threshold: str | float = "half_bit") -> float:
        """Resolution in Å at the first crossing of ``"half_bit"``, ``"one_bit"`` or a number
        (e.g. 0.5 against a ground truth)."""
        return resolution_at_threshold(self.frequency, self.correlation,
                                       self._threshold(threshold))[0]

    def _threshold(self, threshold: str | float) -> np.ndarray:
        if isinstance(threshold, str):
            if threshold not in ("half_bit", "one_bit"):
                raise ValueError(f"threshold must be 'half_bit', 'one_bit' or a number, "
                                 f"got {threshold!r}")
            return getattr(self, threshold)
        return np.full(len(self.frequency), float(threshold))


def fourier_correlation(a: np.ndarray, b: np.ndarray, spacing: float) -> FourierCorrelation:
    """FSC of two volumes ``[z, x, y]`` or FRC of two images ``[x, y]`` (same shape).

    Args:
        a, b: real arrays of the same shape.
        spacing: voxel / pixel size in Å.
    """
    a = check_grid("a", a, (2, 3))
    b = check_grid("b", b, (2, 3))
    v = check_positive("spacing", spacing)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    shell, weight, dk, n_shells = _shells(a.shape, v)
    fa, fb = sfft.rfftn(a), sfft.rfftn(b)
    inside = shell < n_shells
    s, w = shell[inside], weight[inside]
    fa, fb = fa[inside], fb[inside]

    def shell_sum(x: np.ndarray) -> np.ndarray:
        return np.bincount(s, weights=w * x, minlength=n_shells)

    num = shell_sum(np.real(fa * np.conj(fb)))
    den = np.sqrt(shell_sum(np.abs(fa) ** 2) * shell_sum(np.abs(fb) ** 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    n = np.bincount(s, weights=w, minlength=n_shells)
    return FourierCorrelation(np.arange(n_shells) * dk, corr, n,
                              half_bit_threshold(n), one_bit_threshold(n))


def fourier_shell_correlation(
    volume1: np.ndarray, volume2: np.ndarray, voxel_size: float
) -> FourierCorrelation:
    """FSC of two volumes ``[z, x, y]`` (``voxel_size`` in Å); see :func:`fourier_correlation`."""
    if np.ndim(volume1) != 3:
        raise ValueError(f"volume1 must be 3D [z, x, y], got shape {np.shape(volume1)}")
    return fourier_correlation(volume1, volume2, voxel_size)


def fourier_ring_correlation(
    image1: np.ndarray, image2: np.ndarray, pixel_size: float
) -> FourierCorrelation:
    """FRC of two images ``[x, y]`` with ``pixel_size`` in Å; see :func:`fourier_correlation`."""
    if np.ndim(image1) != 2:
        raise ValueError(f"image1 must be 2D [x, y], got shape {np.shape(image1)}")
    return fourier_correlation(image1, image2, pixel_size)


def resolution_at_threshold(
    frequency: np.ndarray, correlation: np.ndarray, threshold: np.ndarray | float, start: int = 1
) -> tuple[float, bool]:
    """Period ``1/k`` in Å at the first crossing of ``correlation`` below ``threshold``.

    Args:
        frequency: ``[S]`` shell frequencies (1/Å). correlation: ``[S]``.
        threshold: ``[S]`` or a scalar.
        start: first shell searched (1 skips DC).

    Returns:
        ``(resolution_A, crossed)``; see the module docstring for the edge cases.
    """
    f = np.asarray(frequency, dtype=np.float64)
    d = np.asarray(correlation, dtype=np.float64) - np.broadcast_to(threshold, f.shape)
    d = np.where(np.isnan(d), -np.inf, d)
    if start >= len(f):
        raise ValueError(f"start={start} must be below the number of shells {len(f)}")
    below = np.flatnonzero(d[start:] < 0)
    if len(below) == 0:
        return 1.0 / f[-1], False
    s = start + below[0]
    if s == start:
        return 1.0 / f[s], True
    d0, d1 = d[s - 1], d[s]
    t = 1.0 if np.isinf(d1) else d0 / (d0 - d1)
    return 1.0 / (f[s - 1] + t * (f[s] - f[s - 1])), True


def radial_power_spectrum(
    array: np.ndarray, spacing: float, window: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Radially (spherically) averaged power spectrum of an image or a volume.

    Args:
        array: image ``[x, y]`` or volume ``[z, x, y]``.
        spacing: pixel / voxel size in Å.
        window: multiply by a separable Hann window first (for non-periodic images).

    Returns:
        ``(frequency [S] 1/Å, power [S])``: mean of ``|FFT|^2 / n_samples`` over each shell, so
        white noise of variance s^2 has power s^2 in every shell.
    """
    arr = check_grid("array", array, (2, 3)).astype(np.float64)
    v = check_positive("spacing", spacing)
    if window:
        for ax, n in enumerate(arr.shape):
            arr = arr * np.hanning(n).reshape([-1 if i == ax else 1 for i in range(arr.ndim)])
    shell, weight, dk, n_shells = _shells(arr.shape, v)
    p = np.abs(sfft.rfftn(arr)) ** 2 / arr.size
    inside = shell < n_shells
    s, w = shell[inside], weight[inside]
    tot = np.bincount(s, weights=w * p[inside], minlength=n_shells)
    n = np.bincount(s, weights=w, minlength=n_shells)
    return np.arange(n_shells) * dk, tot / np.maximum(n, 1)


def information_limit(
    frequency: np.ndarray, power: np.ndarray, factor: float = 3.0, tail: float = 0.15
) -> tuple[float, float]:
    """Information limit from a radial power spectrum.

    Definition: the noise floor is the median power of the shells in the top ``tail`` fraction
    of frequencies (``k >= (1 - tail) k_max``). The information limit is the highest frequency
    at which the power is still ``factor`` times the floor, interpolated in log power between
    the last shell above and the next one.

    Returns:
        ``(k_limit 1/Å, noise_floor)``; the resolution is ``1 / k_limit`` Å.
    """
    f = np.asarray(frequency, dtype=np.float64)
    p = np.asarray(power, dtype=np.float64)
    factor = check_positive("factor", factor)
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail!r}")
    floor = float(np.median(p[f >= (1 - tail) * f[-1]]))
    if floor <= 0:
        raise ValueError(f"noise floor must be > 0 to define an information limit, got {floor}")
    above = np.flatnonzero(p[1:] >= factor * floor) + 1
    if len(above) == 0:
        return float(f[1]), floor
    s = above[-1]
    if s == len(f) - 1:
        return float(f[s]), floor
    l0, l1, lt = np.log(p[s]), np.log(max(p[s + 1], 1e-300)), np.log(factor * floor)
    t = (l0 - lt) / (l0 - l1) if l0 > l1 else 0.0
    return float(f[s] + t * (f[s + 1] - f[s])), floor


def _fwhm(profile: np.ndarray, step: float) -> float:
    """Full width at half maximum [Å] of a 1D ``profile`` peaked at its centre sample, above
    its minimum, by linear interpolation of the half-maximum crossings (NaN if unbounded)."""
    c = len(profile) // 2
    p = profile - profile.min()
    half = p[c] / 2
    if p[c] <= 0:
        return float("nan")
    edges = []
    for side in (-1, 1):
        i = c
        while 0 <= i + side < len(p) and p[i + side] > half:
            i += side
        j = i + side
        if not 0 <= j < len(p):
            return float("nan")
        edges.append(i + side * (p[i] - half) / (p[i] - p[j]))
    return float(abs(edges[1] - edges[0]) * step)


def peak_elongation(volume: ArrayLike, voxel_size: float, origin: ArrayLike,
                    positions: ArrayLike, half_width: float = 1.6) -> dict[str, float]:
    """Widths of a volume's peaks at atoms ``positions [N, 3]`` (x, y, z) Å: the FWHM [Å] of
    the profile along z (the beam) and along x through the voxel nearest each atom, within
    ``half_width`` Å either side (from its maximum there). Returns the medians ``fwhm_z_A``,
    ``fwhm_x_A`` and of their ratio, ``elongation`` (1 for a round peak; the missing wedge of
    linear tomography stretches peaks along z), and the number of atoms measured."""
    vol = np.asarray(volume, dtype=np.float64)
    v, o = float(voxel_size), np.asarray(origin, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    h = max(int(round(half_width / v)), 2)
    widths = []
    for x, y, z in pos:
        k, i, j = (int(round(c)) for c in ((z - o[2]) / v, (x - o[0]) / v, (y - o[1]) / v))
        if not (h <= k < vol.shape[0] - h and h <= i < vol.shape[1] - h and 0 <= j < vol.shape[2]):
            continue
        wz = _fwhm(vol[k - h:k + h + 1, i, j], v)
        wx = _fwhm(vol[k, i - h:i + h + 1, j], v)
        if np.isfinite(wz) and np.isfinite(wx) and wx > 0:
            widths.append((wz, wx))
    if not widths:
        nan = float("nan")
        return {"fwhm_z_A": nan, "fwhm_x_A": nan, "elongation": nan, "n_peaks": 0}
    w = np.asarray(widths)
    return {"fwhm_z_A": float(np.median(w[:, 0])), "fwhm_x_A": float(np.median(w[:, 1])),
            "elongation": float(np.median(w[:, 0] / w[:, 1])), "n_peaks": len(w)}
