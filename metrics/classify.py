"""Species classification of traced atoms (paper 001 section II.E).

Each traced atom gets the integrated intensity of the volume in a sphere (radius in Å) around
it. The 1D intensities are clustered (k-means or a Gaussian mixture) into the species plus an
optional "non-atom" class. Classes are ordered by increasing mean intensity: label 0 is the
non-atom class (the lowest), labels 1..n the species from the weakest to the strongest, or the
species' atomic numbers when given (sorted ascending: heavier atoms are assumed brighter).
Whether a non-atom class exists is decided, unless the caller fixes it, by fitting n + 1
classes and keeping them only if every pair of adjacent classes is separated by a valley of the
intensity density (see :func:`separated_by_valleys`); otherwise n classes are fitted. A model
criterion such as BIC is not used: with 10^5 atoms it splits any non-Gaussian species peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from metrics.grid import ArrayLike, angstrom_to_index, check_grid, check_points, check_positive

NON_ATOM = 0


@dataclass
class SpeciesClasses:
    """Result of :func:`classify_species`.

    Attributes:
        labels: ``[N]`` int labels; 0 = non-atom, else species index (1..n) or atomic number.
        class_labels: ``[K]`` the label of each class, in order of increasing mean intensity.
        class_means: ``[K]`` mean integrated intensity of each class.
        has_non_atom: whether the lowest class is a non-atom class.
    """

    labels: np.ndarray
    class_labels: np.ndarray
    class_means: np.ndarray
    has_non_atom: bool


def integrated_intensity(
    array: np.ndarray,
    positions: ArrayLike,
    spacing: float,
    origin: ArrayLike | None = None,
    radius: float = 1.0,
    chunk: int = 5000,
) -> np.ndarray:
    """Integral of a volume (or image) inside a sphere (disc) of ``radius`` Å around each atom.

    Args:
        array: volume ``[z, x, y]`` (positions ``[N, 3]`` (x, y, z) Å) or image ``[x, y]``
            (positions ``[N, 2]`` (x, y) Å).
        positions: atom positions in Å.
        spacing: voxel / pixel size in Å.
        origin: Å position of element ``[0, ...]``; default zeros.
        radius: sphere radius in Å; voxels whose centre lies within it are summed.
        chunk: atoms per batch (bounds the memory).

    Returns:
        ``[N]`` sums times the voxel volume (input units x Å^3, or x Å^2 for an image).
        Voxels outside the array count as zero.
    """
    arr = check_grid("array", array, (2, 3))
    pos = check_points("positions", positions, arr.ndim)
    v = check_positive("spacing", spacing)
    radius = check_positive("radius", radius)
    dim = arr.ndim
    idx = angstrom_to_index(pos, v, origin).reshape(-1, dim)
    half = int(np.ceil(radius / v)) + 1
    grid = np.stack(np.meshgrid(*[np.arange(-half, half + 1)] * dim, indexing="ij"), -1)
    offsets = grid.reshape(-1, dim)
    shape = np.asarray(arr.shape)
    out = np.zeros(len(pos))
    for start in range(0, len(pos), chunk):
        p = idx[start : start + chunk]
        cells = np.rint(p).astype(np.intp)[:, None, :] + offsets[None]
        inside = np.sum((cells - p[:, None, :]) ** 2, axis=-1) <= (radius / v) ** 2
        inside &= np.all((cells >= 0) & (cells < shape), axis=-1)
        vals = np.zeros(inside.shape)
        vals[inside] = arr[tuple(cells[inside].T)]
        out[start : start + chunk] = vals.sum(axis=1)
    return out * v**dim


def _dp_centres(x: np.ndarray, k: int, n_bins: int = 1024) -> np.ndarray:
    """Globally optimal 1D k-means centres of the data binned into ``n_bins`` equal bins
    (dynamic programming over contiguous runs of bins). Returns ``[k]`` sorted centres."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.full(k, lo)
    b = np.minimum(((x - lo) / (hi - lo) * n_bins).astype(np.intp), n_bins - 1)
    w = np.bincount(b, minlength=n_bins).astype(np.float64)
    s1 = np.bincount(b, weights=x, minlength=n_bins)
    s2 = np.bincount(b, weights=x * x, minlength=n_bins)
    keep = w > 0
    w, s1, s2 = w[keep], s1[keep], s2[keep]
    n = len(w)
    if n <= k:
        return np.sort(np.concatenate([s1 / w, np.full(k - n, hi)]))
    cw, c1, c2 = (np.concatenate([[0.0], np.cumsum(a)]) for a in (w, s1, s2))
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # run = bins i..j
    valid = i <= j
    ww = np.where(valid, cw[j + 1] - cw[i], 1.0)
    cost = np.where(valid, c2[j + 1] - c2[i] - (c1[j + 1] - c1[i]) ** 2 / ww, np.inf)
    best = cost[0].copy()  # one cluster over bins 0..j
    arg = []
    for _ in range(1, k):
        prev = np.concatenate([[np.inf], best[:-1]])  # clusters over bins 0..i-1
        total = prev[:, None] + cost
        arg.append(np.argmin(total, axis=0))
        best = total[arg[-1], np.arange(n)]
    ends, j_end = [], n - 1
    for a in reversed(arg):
        start = a[j_end]
        ends.append((start, j_end))
        j_end = start - 1
    ends.append((0, j_end))
    return np.sort([(c1[e + 1] - c1[s]) / (cw[e + 1] - cw[s]) for s, e in ends])


def kmeans_1d(x: np.ndarray, k: int, n_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1D k-means: near-global initialisation by dynamic programming on binned
    data, then Lloyd iterations on the raw data.

    Returns ``(labels [N], centres [k])`` with centres sorted increasingly.
    """
    centres = _dp_centres(x, k)
    labels = np.zeros(len(x), dtype=np.intp)
    for _ in range(n_iter):
        edges = 0.5 * (centres[1:] + centres[:-1])
        labels = np.searchsorted(edges, x)
        counts = np.bincount(labels, minlength=k)
        sums = np.bincount(labels, weights=x, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        new = np.sort(new)
        if np.allclose(new, centres, rtol=0, atol=1e-12 * (np.ptp(x) + 1e-300)):
            break
        centres = new
    return np.searchsorted(0.5 * (centres[1:] + centres[:-1]), x), centres


def _gauss_logpdf(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``[N, K]`` log of ``w_k N(x; mu_k, var_k)``."""
    return np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x[:, None] - mu) ** 2 / var


def _mixture_params(
    x: np.ndarray, resp: np.ndarray, wts: np.ndarray, var_floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and variances ``[K]`` from responsibilities ``[B, K]`` of points ``x``
    ``[B]`` that carry weights (counts) ``wts`` ``[B]``."""
    r = resp * wts[:, None]
    nk = r.sum(axis=0) + 1e-300
    mu = (r * x[:, None]).sum(axis=0) / nk
    var = (r * (x[:, None] - mu) ** 2).sum(axis=0) / nk
    return np.maximum(nk / wts.sum(), 1e-300), mu, np.maximum(var, var_floor)


def _binned(x: np.ndarray, n_bins: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Bin means and counts of the non-empty bins of ``n_bins`` equal bins over the range."""
    lo, span = float(x.min()), float(np.ptp(x)) + 1e-300
    b = np.minimum(((x - lo) / span * n_bins).astype(np.intp), n_bins - 1)
    cnt = np.bincount(b, minlength=n_bins).astype(np.float64)
    sums = np.bincount(b, weights=x, minlength=n_bins)
    keep = cnt > 0
    return sums[keep] / cnt[keep], cnt[keep]


def fit_clusters(
    x: np.ndarray, k: int, method: Literal["kmeans", "gmm"], n_iter: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1D data into ``k`` classes ordered by mean.

    ``"kmeans"``: :func:`kmeans_1d`. ``"gmm"``: a 1D Gaussian mixture fitted by EM, started from
    the k-means classes, on the data binned into 4096 bins (bin means weighted by counts);
    variances are floored at (1e-3 * range)^2 and each atom gets its most probable class.

    Returns ``(labels [N], means [k])``.
    """
    labels, centres = kmeans_1d(x, k)
    if method != "gmm":
        return labels, centres
    var_floor = max((1e-3 * float(np.ptp(x))) ** 2, 1e-12 * float(np.mean(x**2)), 1e-300)
    xb, wb = _binned(x)
    lab_b = np.searchsorted(0.5 * (centres[1:] + centres[:-1]), xb)
    w, mu, var = _mixture_params(xb, np.eye(k)[lab_b], wb, var_floor)
    prev = -np.inf
    for _ in range(n_iter):
        lp = _gauss_logpdf(xb, w, mu, var)
        top = lp.max(axis=1, keepdims=True)
        resp = np.exp(lp - top)
        tot = resp.sum(axis=1, keepdims=True)
        ll = float(np.sum(wb * (top + np.log(tot))[:, 0]))
        w, mu, var = _mixture_params(xb, resp / tot, wb, var_floor)
        if ll - prev < 1e-9 * len(x):
            break
        prev = ll
    order = np.argsort(mu)
    w, mu, var = w[order], mu[order], var[order]
    return np.argmax(_gauss_logpdf(x, w, mu, var), axis=1), mu


def separated_by_valleys(
    x: np.ndarray, labels: np.ndarray, k: int, valley_ratio: float = 0.5
) -> bool:
    """True if each pair of adjacent classes (0..k-1, ordered by intensity) is bimodal.

    For classes j and j + 1, a Gaussian kernel density of their members (Silverman's bandwidth
    ``0.9 min(std, IQR / 1.34) n^(-1/5)`` of the pair's members) is evaluated at the
    boundary (midway between the largest member of j and the smallest of j + 1) and at both
    class medians; the pair is separated if the boundary density is below ``valley_ratio``
    times the smaller median density. A unimodal peak split in two fails this test.
    """
    floor = 1e-3 * float(np.ptp(x)) + 1e-300
    for j in range(k - 1):
        a, b = x[labels == j], x[labels == j + 1]
        if len(a) == 0 or len(b) == 0:
            return False
        both = np.concatenate([a, b])
        q75, q25 = np.percentile(both, [75, 25])
        h = max(0.9 * min(both.std(), (q75 - q25) / 1.34) * len(both) ** -0.2, floor)
        pts = np.array([0.5 * (a.max() + b.min()), np.median(a), np.median(b)])
        dens = np.exp(-0.5 * ((pts[:, None] - both[None]) / h) ** 2).sum(axis=1)
        if dens[0] >= valley_ratio * min(dens[1], dens[2]):
            return False
    return True


def classify_species(
    intensities: ArrayLike,
    n_species: int,
    *,
    method: Literal["kmeans", "gmm"] = "kmeans",
    non_atom: bool | None = None,
    atomic_numbers: Sequence[int] | None = None,
) -> SpeciesClasses:
    """Classify traced atoms by their integrated intensity into species and non-atoms.

    Args:
        intensities: ``[N]`` integrated intensities (see :func:`integrated_intensity`).
        n_species: number of atomic species (>= 1).
        method: ``"kmeans"`` (1D k-means) or ``"gmm"`` (1D Gaussian mixture, EM).
        non_atom: True: always fit a non-atom class below the species; False: never;
            None (default): keep it if the n + 1 classes are separated by density valleys.
        atomic_numbers: optional ``n_species`` atomic numbers; they are sorted ascending and
            given to the classes of increasing intensity, and become the labels.

    Returns:
        :class:`SpeciesClasses`; label 0 means non-atom.
    """
    x = np.asarray(intensities, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("intensities must be finite (found NaN or inf)")
    if int(n_species) != n_species or n_species < 1:
        raise ValueError(f"n_species must be an integer >= 1, got {n_species!r}")
    if method not in ("kmeans", "gmm"):
        raise ValueError(f"method must be 'kmeans' or 'gmm', got {method!r}")
    species = np.arange(1, n_species + 1)
    if atomic_numbers is not None:
        species = np.sort(np.asarray(atomic_numbers, dtype=np.int64))
        if species.shape != (n_species,) or np.any(species < 1) or len(set(species)) < n_species:
            raise ValueError(
                f"atomic_numbers must be {n_species} distinct integers >= 1, got {atomic_numbers!r}"
            )
    if len(x) < n_species:
        raise ValueError(f"need at least n_species={n_species} intensities, got {len(x)}")
    options = {False: n_species, True: n_species + 1}
    flag = bool(non_atom) if non_atom is not None else options[True] <= len(x)
    if options[flag] > len(x):
        raise ValueError(f"need at least {options[flag]} intensities, got {len(x)}")
    labels, means = fit_clusters(x, options[flag], method)
    if non_atom is None and flag and not separated_by_valleys(x, labels, options[True]):
        flag = False
        labels, means = fit_clusters(x, options[flag], method)
    class_labels = np.concatenate([[NON_ATOM], species]) if flag else species
    return SpeciesClasses(class_labels[labels], class_labels, means, flag)
