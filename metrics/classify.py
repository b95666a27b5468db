"""Species classification of traced atoms (paper 001 section II.E).

Each traced atom gets the integrated intensity of the volume in a sphere (radius in Å) around
it. The 1D intensities are clustered (k-means or a Gaussian mixture) into the species plus an
optional "non-atom" class. Classes are ordered by increasing mean intensity: label 0 is the
non-atom class (the lowest), labels 1..n the species from the weakest to the strongest, or the
species' atomic numbers when given (sorted ascending: heavier atoms are assumed brighter).
Whether a non-atom class exists is decided by the Bayesian information criterion of the 1D
Gaussian mixture with n and n + 1 classes, unless the caller fixes it.
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


def kmeans_1d(x: np.ndarray, k: int, n_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1D k-means (Lloyd, quantile initialisation).

    Returns ``(labels [N], centres [k])`` with centres sorted increasingly.
    """
    centres = np.quantile(x, (np.arange(k) + 0.5) / k)
    labels = np.zeros(len(x), dtype=np.intp)
    for _ in range(n_iter):
        labels = np.argmin(np.abs(x[:, None] - centres[None]), axis=1)
        new = centres.copy()
        for c in range(k):
            members = x[labels == c]
            if len(members):
                new[c] = members.mean()
            else:  # empty cluster: move it to the worst-fitted point
                new[c] = x[np.argmax(np.min(np.abs(x[:, None] - centres[None]), axis=1))]
        if np.allclose(new, centres, rtol=0, atol=1e-12 * (np.ptp(x) + 1e-300)):
            break
        centres = new
    order = np.argsort(centres)
    rank = np.empty(k, dtype=np.intp)
    rank[order] = np.arange(k)
    labels = rank[np.argmin(np.abs(x[:, None] - centres[None]), axis=1)]
    return labels, centres[order]


def _gauss_logpdf(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``[N, K]`` log of ``w_k N(x; mu_k, var_k)``."""
    return np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x[:, None] - mu) ** 2 / var


def _mixture_params(
    x: np.ndarray, resp: np.ndarray, var_floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and variances ``[K]`` from responsibilities ``[N, K]``."""
    nk = resp.sum(axis=0) + 1e-300
    mu = (resp * x[:, None]).sum(axis=0) / nk
    var = (resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk
    return np.maximum(nk / len(x), 1e-300), mu, np.maximum(var, var_floor)


def _loglik(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray) -> float:
    """Total log-likelihood of ``x`` under the 1D Gaussian mixture."""
    lp = _gauss_logpdf(x, w, mu, var)
    m = lp.max(axis=1, keepdims=True)
    return float(np.sum(m[:, 0] + np.log(np.exp(lp - m).sum(axis=1))))


def fit_clusters(
    x: np.ndarray, k: int, method: Literal["kmeans", "gmm"], n_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cluster 1D data into ``k`` classes ordered by mean.

    Returns ``(labels [N], means [k], loglik)`` where ``loglik`` is the log-likelihood of the
    1D Gaussian mixture implied by the clustering (variances floored at (1e-3 * range)^2).
    """
    var_floor = max((1e-3 * float(np.ptp(x))) ** 2, 1e-12 * float(np.mean(x**2)), 1e-300)
    labels, _ = kmeans_1d(x, k)
    resp = np.eye(k)[labels]
    w, mu, var = _mixture_params(x, resp, var_floor)
    if method == "gmm":
        prev = -np.inf
        for _ in range(n_iter):
            lp = _gauss_logpdf(x, w, mu, var)
            resp = np.exp(lp - lp.max(axis=1, keepdims=True))
            resp /= resp.sum(axis=1, keepdims=True)
            w, mu, var = _mixture_params(x, resp, var_floor)
            ll = _loglik(x, w, mu, var)
            if ll - prev < 1e-9 * len(x):
                break
            prev = ll
        order = np.argsort(mu)
        w, mu, var = w[order], mu[order], var[order]
        labels = np.argmax(_gauss_logpdf(x, w, mu, var), axis=1)
    return labels, mu, _loglik(x, w, mu, var)


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
            None (default): keep it if the mixture's BIC with n + 1 classes is lower than with n.
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
    if non_atom is None:
        fits = {}
        for flag, k in options.items():
            if k <= len(x):
                labels, means, ll = fit_clusters(x, k, method)
                fits[flag] = (labels, means, -2 * ll + (3 * k - 1) * np.log(len(x)))
        flag = min(fits, key=lambda f: fits[f][2])
        labels, means, _ = fits[flag]
    else:
        flag = bool(non_atom)
        if options[flag] > len(x):
            raise ValueError(f"need at least {options[flag]} intensities, got {len(x)}")
        labels, means, _ = fit_clusters(x, options[flag], method)
    class_labels = np.concatenate([[NON_ATOM], species]) if flag else species
    return SpeciesClasses(class_labels[labels], class_labels, means, flag)
