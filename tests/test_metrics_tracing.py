"""Atom tracing and species classification on volumes rendered from known atoms."""

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from metrics.classify import classify_species, integrated_intensity, kmeans_1d
from metrics.grid import angstrom_to_voxel
from metrics.matching import score_atoms
from metrics.synthetic import random_atoms, render_gaussians
from metrics.tracing import find_columns, find_peaks, reject_close_peaks, trace_atoms

VOXEL = 0.4
SHAPE = (40, 44, 36)
ORIGIN = (-3.0, 1.5, 10.0)
SIGMA = 0.4  # Å, blob width
Z_LIGHT, Z_HEAVY = 29, 79


def _phantom(seed: int, n: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atoms >= 2.05 Å apart at random sub-voxel positions, two species (heights 1 and 2).

    (Not exactly 2 Å: overlapping tails pull refined peaks together by ~1 mÅ, and the default
    2 Å minimum-distance rejection would then merge a pair generated at 2.001 Å.)
    """
    rng = np.random.default_rng(seed)
    box = np.array([SHAPE[1], SHAPE[2], SHAPE[0]]) * VOXEL
    pos = random_atoms(n, box - VOXEL, 2.05, rng, margin=1.5) + np.asarray(ORIGIN)
    z = np.where(rng.random(len(pos)) < 0.5, Z_LIGHT, Z_HEAVY)
    vol = render_gaussians(pos, np.where(z == Z_HEAVY, 2.0, 1.0), SIGMA, SHAPE, VOXEL, ORIGIN)
    return pos, z, vol


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_trace_and_classify_recovers_phantom(seed: int) -> None:
    pos, z, vol = _phantom(seed)
    traced = trace_atoms(vol, VOXEL, ORIGIN)
    inten = integrated_intensity(vol, traced.positions, VOXEL, ORIGIN, radius=0.8)
    classes = classify_species(inten, 2, atomic_numbers=[Z_HEAVY, Z_LIGHT])
    scores = score_atoms(traced.positions, pos, classes.labels, z)
    assert scores.tracing_error == 0.0
    assert scores.classification_rate == 1.0
    assert not classes.has_non_atom
    assert scores.rmsd_pm / (VOXEL * 100) <= 0.05  # RMSD in voxels
    assert scores.rmsd_pm < 0.5  # in fact ~0.01 pm: the log-quadratic fit is exact for Gaussians


def test_spurious_weak_peaks_are_classified_non_atom() -> None:
    pos, z, vol = _phantom(2)
    rng = np.random.default_rng(5)
    box = np.array([SHAPE[1], SHAPE[2], SHAPE[0]]) * VOXEL
    cand = rng.uniform(1.5, box - 1.5, (400, 3)) + np.asarray(ORIGIN)
    far = cand[np.min(np.linalg.norm(cand[:, None] - pos[None], axis=2), axis=1) > 2.2]
    far = far[:8][np.all(np.linalg.norm(far[:8, None] - far[None, :8], axis=2)
                         + 9 * np.eye(len(far[:8])) > 2.2, axis=1)]
    vol = vol + render_gaussians(far, 0.15, SIGMA, SHAPE, VOXEL, ORIGIN)
    traced = trace_atoms(vol, VOXEL, ORIGIN)
    assert len(traced) == len(pos) + len(far)
    inten = integrated_intensity(vol, traced.positions, VOXEL, ORIGIN, radius=0.8)
    for method in ("kmeans", "gmm"):
        classes = classify_species(inten, 2, method=method, atomic_numbers=[Z_LIGHT, Z_HEAVY])
        assert classes.has_non_atom
        assert np.sum(classes.labels == 0) == len(far)
        scores = score_atoms(traced.positions, pos, classes.labels, z)
        assert scores.n_non_atom == len(far)
        assert scores.tracing_error == 0.0 and scores.classification_rate == 1.0


def test_integrated_intensity_of_a_gaussian() -> None:
    # A 3D Gaussian of height h integrates to h (2π)^{3/2} σ^3 over all space; within 4σ the
    # missing mass is < 0.2 %.
    sigma, h = 0.5, 3.0
    p = np.array([[6.13, 5.87, 6.02]])
    vol = render_gaussians(p, h, sigma, (30, 30, 30), 0.4, cutoff=6)
    got = integrated_intensity(vol, p, 0.4, radius=4 * sigma)[0]
    expected = h * (2 * np.pi) ** 1.5 * sigma**3
    assert got == pytest.approx(expected, rel=5e-3)


def test_min_distance_keeps_the_brighter_peak() -> None:
    pos = np.array([[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0], [10.0, 0, 0]])
    inten = np.array([1.0, 2.0, 1.5, 0.1])
    keep = reject_close_peaks(pos, inten, 2.0)
    # 1 (brightest) suppresses 0 and 2; 3 is isolated.
    np.testing.assert_array_equal(keep, [False, True, False, True])
    keep = reject_close_peaks(pos, np.array([2.0, 1.0, 1.5, 0.1]), 2.0)
    np.testing.assert_array_equal(keep, [True, False, True, True])


def test_threshold_support_and_smoothing() -> None:
    pos = np.array([[3.0, 3.1, 3.2], [8.05, 7.9, 8.3], [5.5, 9.0, 4.0]])
    vol = render_gaussians(pos, [1.0, 0.5, 0.2], 0.5, (30, 30, 30), 0.4)
    assert len(trace_atoms(vol, 0.4)) == 3
    assert len(trace_atoms(vol, 0.4, threshold=0.3)) == 2
    # Smoothing with σ_s keeps the centres of isolated Gaussians.
    smooth = trace_atoms(vol, 0.4, sigma=0.3)
    np.testing.assert_allclose(smooth.positions, pos, atol=1e-3)  # already sorted by height
    # Otsu support keeps exactly the peaks above Otsu's threshold of the volume.
    t = threshold_otsu(vol)
    otsu = trace_atoms(vol, 0.4, support="otsu")
    np.testing.assert_allclose(otsu.positions, pos[np.array([1.0, 0.5, 0.2]) > t], atol=1e-6)
    mask = np.zeros(vol.shape, bool)
    mask[:, :15] = True  # x < 6 Å
    got = trace_atoms(vol, 0.4, support=mask)
    assert np.all(got.positions[:, 0] < 6.0) and len(got) == 2
    with pytest.raises(ValueError, match="support"):
        trace_atoms(vol, 0.4, support="bogus")


def test_refinement_methods_and_plain_voxel_centres() -> None:
    p = np.array([[4.13, 3.77, 4.31]])
    vol = render_gaussians(p, 1.0, 0.45, (24, 24, 24), 0.4)
    g = trace_atoms(vol, 0.4, refine="gaussian").positions[0]
    q = trace_atoms(vol, 0.4, refine="quadratic").positions[0]
    n = trace_atoms(vol, 0.4, refine="none").positions[0]
    assert np.abs(g - p[0]).max() < 1e-6
    assert np.abs(q - p[0]).max() < 0.1 * 0.4  # a quadratic is only approximate
    np.testing.assert_allclose(n, np.rint(angstrom_to_voxel(p, 0.4))[0][[1, 2, 0]] * 0.4)


def test_find_columns_2d_subpixel() -> None:
    rng = np.random.default_rng(3)
    cols = np.array([[2.03, 2.51], [5.47, 2.22], [3.71, 6.18]])
    img = render_gaussians(cols, [1.0, 0.8, 0.6], 0.35, (90, 90), 0.1) + 0.01
    got = find_columns(img, 0.1, threshold=0.2)
    assert len(got) == 3
    np.testing.assert_allclose(np.sort(got.positions, axis=0), np.sort(cols, axis=0), atol=1e-3)
    noisy = img + rng.normal(0, 1e-3, img.shape)
    got = find_columns(noisy, 0.1, threshold=0.2)
    np.testing.assert_allclose(np.sort(got.positions, axis=0), np.sort(cols, axis=0), atol=5e-3)


def test_kmeans_1d_orders_clusters() -> None:
    x = np.array([5.0, 5.1, 1.0, 1.1, 9.0, 9.2, 0.9])
    labels, centres = kmeans_1d(x, 3)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 2, 2, 0])
    np.testing.assert_allclose(centres, [1.0, 5.05, 9.1])


def test_classify_bad_inputs() -> None:
    with pytest.raises(ValueError, match="n_species"):
        classify_species([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="atomic_numbers"):
        classify_species([1.0, 2.0, 3.0], 2, atomic_numbers=[8, 8])
    with pytest.raises(ValueError, match="method"):
        classify_species([1.0, 2.0, 3.0], 2, method="dbscan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="volume must be a 3D"):
        trace_atoms(np.zeros((4, 4)), 0.4)
    with pytest.raises(ValueError, match="spacing"):
        find_peaks(np.zeros((4, 4, 4)), -1.0)


def test_auto_non_atom_is_robust_for_large_non_gaussian_populations() -> None:
    # 10^5 atoms: a skewed light species and a heavy species with a shoulder (surface atoms).
    # Neither may be split into a fake "non-atom" class; a real low cluster must be found.
    rng = np.random.default_rng(7)
    light = 1.0 + rng.gamma(2.0, 0.03, 50_000)
    heavy = np.concatenate([rng.normal(2.0, 0.05, 40_000), rng.normal(2.1, 0.05, 10_000)])
    x = np.concatenate([light, heavy])
    truth = np.repeat([29, 79], 50_000)
    for method in ("kmeans", "gmm"):
        c = classify_species(x, 2, method=method, atomic_numbers=[29, 79])
        assert not c.has_non_atom
        assert np.mean(c.labels == truth) > 0.9999
        noise = rng.normal(0.2, 0.05, 500)
        c = classify_species(np.concatenate([noise, x]), 2, method=method,
                             atomic_numbers=[29, 79])
        assert c.has_non_atom
        assert np.all(c.labels[:500] == 0)
        assert np.mean(c.labels[500:] == truth) > 0.9999
