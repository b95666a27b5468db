"""FSC / FRC, thresholds, resolution crossing, power spectrum and information limit."""

import numpy as np
import pytest
from scipy import fft as sfft

from metrics.resolution import (
    fourier_ring_correlation,
    fourier_shell_correlation,
    half_bit_threshold,
    information_limit,
    one_bit_threshold,
    radial_power_spectrum,
    resolution_at_threshold,
)


def _gauss_blur(x: np.ndarray, sigma: float, spacing: float) -> np.ndarray:
    """Exact (periodic) Gaussian blur: multiply the FFT by exp(-2π²σ²|k|²)."""
    k2 = sum(np.meshgrid(*[sfft.fftfreq(n, spacing) ** 2 for n in x.shape], indexing="ij"))
    return np.real(sfft.ifftn(sfft.fftn(x) * np.exp(-2 * np.pi**2 * sigma**2 * k2)))


def test_fsc_of_a_volume_with_itself_is_one() -> None:
    vol = np.random.default_rng(0).normal(size=(32, 30, 34))
    fsc = fourier_shell_correlation(vol, vol, 0.4)
    np.testing.assert_allclose(fsc.correlation, 1.0, atol=1e-12)
    assert fsc.frequency[1] == pytest.approx(1 / (30 * 0.4))
    assert fsc.frequency[-1] == pytest.approx(1 / (2 * 0.4))  # Nyquist of the smallest axis
    assert fsc.resolution("half_bit") == pytest.approx(0.8)  # never crosses: Nyquist


@pytest.mark.parametrize("shape", [(12, 12, 12), (11, 13, 10), (9, 8)])
def test_rfft_weights_match_a_full_fft(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    got = (fourier_shell_correlation if len(shape) == 3 else fourier_ring_correlation)(a, b, 0.5)
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(n, 0.5) ** 2 for n in shape], indexing="ij")))
    shell = np.rint(k * min(shape) * 0.5).astype(int)
    for s in range(len(got.frequency)):
        sel = shell == s
        num = np.real(np.sum(fa[sel] * np.conj(fb[sel])))
        den = np.sqrt(np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2))
        assert got.correlation[s] == pytest.approx(num / den, abs=1e-12)
        assert got.n_voxels[s] == np.sum(sel)


def test_independent_noise_is_uncorrelated_and_crosses_at_first_shell() -> None:
    rng = np.random.default_rng(2)
    n, v = 48, 0.5
    fsc = fourier_shell_correlation(rng.normal(size=(n,) * 3), rng.normal(size=(n,) * 3), v)
    big = fsc.n_voxels > 200
    assert np.all(np.abs(fsc.correlation[big]) < 4 / np.sqrt(fsc.n_voxels[big]))
    assert fsc.resolution("half_bit") == pytest.approx(n * v)  # = 1 / k_1
    assert fsc.resolution("one_bit") == pytest.approx(n * v)
    assert fsc.resolution(0.5) == pytest.approx(n * v)


def test_threshold_curves_equal_the_formulas() -> None:
    n = np.array([1.0, 4.0, 100.0, 1e4])
    s = np.sqrt(n)
    np.testing.assert_allclose(half_bit_threshold(n), (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s))
    np.testing.assert_allclose(one_bit_threshold(n), (0.5 + 2.4142 / s) / (1.5 + 1.4142 / s))
    assert half_bit_threshold(1.0) == pytest.approx(2.1173 / 2.1173)  # = 1 for a single voxel
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, rel=1e-5)
    assert one_bit_threshold(1e12) == pytest.approx(0.5 / 1.5, rel=1e-5)
    vol = np.random.default_rng(3).normal(size=(20, 20, 20))
    fsc = fourier_shell_correlation(vol, vol, 1.0)
    np.testing.assert_allclose(fsc.half_bit, half_bit_threshold(fsc.n_voxels))
    np.testing.assert_allclose(fsc.one_bit, one_bit_threshold(fsc.n_voxels))


def test_blur_moves_the_fixed_threshold_crossing_as_predicted() -> None:
    # Truth V: white noise (power S = 1). Reconstruction: V blurred by T(k) = exp(-2π²σ²k²)
    # plus independent white noise of power ε. Per shell FSC(k) = T / sqrt(T² + ε), so
    # FSC = 0.5 at T² = ε / 3, i.e. k* = sqrt(ln(3 / ε)) / (2πσ), resolution 1 / k*.
    rng = np.random.default_rng(4)
    n, v, eps = 64, 0.5, 0.01
    vol = rng.normal(size=(n,) * 3)
    got = []
    for sigma in (0.6, 0.9, 1.2):
        rec = _gauss_blur(vol, sigma, v) + np.sqrt(eps) * rng.normal(size=vol.shape)
        res = fourier_shell_correlation(vol, rec, v).resolution(0.5)
        expected = 2 * np.pi * sigma / np.sqrt(np.log(3 / eps))
        assert res == pytest.approx(expected, rel=0.03)
        got.append(res)
    assert got[0] < got[1] < got[2]


def test_frc_blur_prediction_in_2d() -> None:
    rng = np.random.default_rng(5)
    n, p, eps, sigma = 256, 0.2, 0.01, 0.5
    img = rng.normal(size=(n, n))
    rec = _gauss_blur(img, sigma, p) + np.sqrt(eps) * rng.normal(size=img.shape)
    res = fourier_ring_correlation(img, rec, p).resolution(0.5)
    assert res == pytest.approx(2 * np.pi * sigma / np.sqrt(np.log(3 / eps)), rel=0.03)


def test_crossing_is_linearly_interpolated() -> None:
    f = np.arange(6) * 0.1
    c = np.array([1.0, 0.9, 0.7, 0.5 - 0.1, 0.2, 0.1])
    # Crosses 0.5 between f = 0.2 (0.7) and 0.3 (0.4): k = 0.2 + 0.1 * 0.2 / 0.3.
    res, crossed = resolution_at_threshold(f, c, 0.5)
    assert crossed and res == pytest.approx(1 / (0.2 + 0.1 * 2 / 3))
    res, crossed = resolution_at_threshold(f, np.ones(6), 0.5)
    assert not crossed and res == pytest.approx(1 / 0.5)


def test_power_spectrum_of_white_noise_and_information_limit() -> None:
    rng = np.random.default_rng(6)
    f, pw = radial_power_spectrum(rng.normal(0, 2.0, (128, 128)), 0.25)
    assert np.mean(pw[5:]) == pytest.approx(4.0, rel=0.03)  # variance of the noise
    # Signal with power T(k)² (T Gaussian, σ) plus white noise of power n². The spectrum is
    # T² + n²; the floor is n², so P >= 3 n² where T² >= 2 n²:
    # k_lim = sqrt(ln(1 / (2 n²))) / (2πσ).
    n_amp, sigma, p = 0.1, 0.25, 0.2
    img = _gauss_blur(rng.normal(size=(256, 256)), sigma, p) + n_amp * rng.normal(size=(256, 256))
    f, pw = radial_power_spectrum(img, p)
    k_lim, floor = information_limit(f, pw, factor=3.0)
    assert floor == pytest.approx(n_amp**2, rel=0.05)
    assert k_lim == pytest.approx(np.sqrt(np.log(1 / (2 * n_amp**2))) / (2 * np.pi * sigma),
                                  rel=0.03)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same shape"):
        fourier_shell_correlation(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), 1.0)
    with pytest.raises(ValueError, match="voxel|spacing"):
        fourier_shell_correlation(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), 0.0)
    with pytest.raises(ValueError, match="threshold"):
        fourier_ring_correlation(np.ones((8, 8)), np.ones((8, 8)), 1.0).resolution("full_bit")
    with pytest.raises(ValueError, match="volume1 must be 3D"):
        fourier_shell_correlation(np.zeros((4, 4)), np.zeros((4, 4)), 1.0)


def test_peak_elongation_measures_anisotropic_gaussians():
    """Gaussian peaks with sigma_z = 2 sigma_x: FWHM 2.355 sigma on each axis, ratio 2 (a
    swapped axis would give 0.5); atoms too near the edge are left out."""
    from metrics import peak_elongation

    v, n = 0.1, 64
    origin = np.array([0.0, 0.0, 0.0])
    z, x, y = np.meshgrid(*(np.arange(n) * v,) * 3, indexing="ij")
    atoms = np.array([[2.0, 3.0, 3.2], [4.1, 3.0, 2.9], [3.0, 4.0, 4.0], [0.05, 3.0, 3.0]])
    sx, sz = 0.25, 0.5
    vol = sum(np.exp(-((x - a[0]) ** 2 + (y - a[1]) ** 2) / (2 * sx**2)
                     - (z - a[2]) ** 2 / (2 * sz**2)) for a in atoms)
    out = peak_elongation(vol, v, origin, atoms, half_width=1.6)
    assert out["n_peaks"] == 3
    assert out["fwhm_x_A"] == pytest.approx(2.3548 * sx, rel=0.03)
    assert out["fwhm_z_A"] == pytest.approx(2.3548 * sz, rel=0.03)
    assert out["elongation"] == pytest.approx(2.0, rel=0.04)
