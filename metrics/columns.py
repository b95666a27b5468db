"""Image and atomic-column metrics (papers 002, 003, 004).

- :func:`r_factor`: ``sum |I_obs - I_cal| / sum |I_obs|`` (paper 004 eq. 11).
- :func:`assign_columns`: label found columns by matching them to reference sites.
- :func:`column_displacements`, :func:`srtio3_displacements`: offset of a column from the centre
  of its four nearest neighbour columns; d(Sr-TiO) and d(O-TiO) in pm (paper 002).
- :func:`atom_columns`, :func:`column_com`, :func:`columns_from_atoms`,
  :func:`vibration_spread`: per-column centre of mass across object states vs the true spread
  over MD snapshots (paper 003).
- :func:`tilt_error_mrad`, :func:`thickness_error_A`: recovered mistilt and thickness errors.

Column finding itself is :func:`metrics.tracing.find_columns`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from metrics.grid import (
    ArrayLike,
    angstrom_to_pixel,
    check_array,
    check_grid,
    check_points,
    check_positive,
    pixel_to_angstrom,
)
from metrics.matching import PM_PER_A, match_atoms
from metrics.synthetic import SRTIO3_LATTICE_A


def r_factor(observed: ArrayLike, calculated: ArrayLike) -> float:
    """R-factor ``sum |I_obs - I_cal| / sum |I_obs|`` over all pixels (paper 004 eq. 11).

    Args:
        observed: image(s) of any shape, e.g. ``[x, y]`` or ``[tilt, x, y]``.
        calculated: same shape.
    """
    obs = check_grid("observed", observed, tuple(range(1, 6)))
    cal = check_grid("calculated", calculated, tuple(range(1, 6)))
    if obs.shape != cal.shape:
        raise ValueError(f"observed and calculated must have the same shape, got {obs.shape} "
                         f"and {cal.shape}")
    den = float(np.sum(np.abs(obs)))
    if den == 0:
        raise ValueError("observed must not be all zeros (sum |I_obs| = 0)")
    return float(np.sum(np.abs(obs - cal))) / den


def assign_columns(
    positions: ArrayLike, sites: dict[str, ArrayLike], r_match: float = 0.5
) -> dict[str, np.ndarray]:
    """Label found columns by matching them one to one to reference sites of each type.

    Args:
        positions: ``[N, 2]`` found column positions (x, y) in Å.
        sites: name -> ``[M, 2]`` reference sites (x, y) in Å (e.g. from an ideal lattice).
        r_match: largest allowed distance in Å.

    Returns:
        name -> ``[M, 2]`` found positions in the order of the sites; NaN where a site has no
        found column within ``r_match``.
    """
    pos = check_points("positions", positions, 2)
    names = list(sites)
    ref = [check_points(f"sites[{n!r}]", sites[n], 2) for n in names]
    all_sites = np.concatenate(ref) if ref else np.zeros((0, 2))
    m = match_atoms(pos, all_sites, r_match)
    found = np.full(all_sites.shape, np.nan)
    found[m.true_index] = pos[m.traced_index]
    bounds = np.cumsum([0] + [len(r) for r in ref])
    return {n: found[bounds[i] : bounds[i + 1]] for i, n in enumerate(names)}


def column_displacements(
    centres: ArrayLike, neighbours: ArrayLike, n_neighbours: int = 4, max_distance: float = np.inf
) -> np.ndarray:
    """Offset of each centre column from the mean of its ``n_neighbours`` nearest neighbours.

    Args:
        centres: ``[N, 2]`` (x, y) Å; NaN rows are allowed and give NaN.
        neighbours: ``[M, 2]`` (x, y) Å; NaN rows are ignored.
        n_neighbours: neighbours averaged (4 for SrTiO3 [001]).
        max_distance: a centre whose n-th neighbour is farther than this (Å) gets NaN
            (e.g. at the edge of the field of view).

    Returns:
        ``[N, 2]`` displacement vectors in Å.
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    nb = np.asarray(neighbours, dtype=np.float64).reshape(-1, 2)
    nb = nb[np.all(np.isfinite(nb), axis=1)]
    out = np.full(c.shape, np.nan)
    ok = np.all(np.isfinite(c), axis=1)
    if len(nb) < n_neighbours or not np.any(ok):
        return out
    dist, idx = cKDTree(nb).query(c[ok], k=n_neighbours)
    dist, idx = dist.reshape(-1, n_neighbours), idx.reshape(-1, n_neighbours)
    disp = c[ok] - nb[idx].mean(axis=1)
    disp[dist[:, -1] > max_distance] = np.nan
    out[ok] = disp
    return out


def srtio3_displacements(
    tio: ArrayLike, sr: ArrayLike, o: ArrayLike, lattice_constant: float = SRTIO3_LATTICE_A
) -> dict[str, Any]:
    """d(Sr-TiO) and d(O-TiO) of cubic SrTiO3 [001] columns (paper 002).

    Each TiO column's offset from the centre of its four nearest Sr columns (expected at
    ``a/√2``, accepted up to ``a``) and of its four nearest O columns (at ``a/2``, accepted up
    to ``0.8 a``). In cubic SrTiO3 the truth is 0, so the magnitudes are the errors.

    Args:
        tio, sr, o: ``[N, 2]`` column positions (x, y) in Å (NaN rows allowed).
        lattice_constant: a in Å (3.905).

    Returns:
        dict with ``d_sr_tio_A`` and ``d_o_tio_A`` (``[N, 2]`` vectors, Å), ``d_sr_tio_pm`` and
        ``d_o_tio_pm`` (``[N]`` magnitudes, pm; NaN for edge columns) and the mean and standard
        deviation of each magnitude (``*_mean_pm``, ``*_std_pm``) over the valid columns.
    """
    a = check_positive("lattice_constant", lattice_constant)
    out: dict[str, Any] = {}
    for name, nb, dmax in (("sr", sr, a), ("o", o, 0.8 * a)):
        vec = column_displacements(tio, nb, 4, dmax)
        mag = np.linalg.norm(vec, axis=1) * PM_PER_A
        valid = mag[np.isfinite(mag)]
        out[f"d_{name}_tio_A"] = vec
        out[f"d_{name}_tio_pm"] = mag
        out[f"d_{name}_tio_mean_pm"] = float(valid.mean()) if len(valid) else float("nan")
        out[f"d_{name}_tio_std_pm"] = float(valid.std()) if len(valid) else float("nan")
    return out


def column_com(
    phases: ArrayLike,
    columns: ArrayLike,
    pixel_size: float,
    origin: ArrayLike = (0.0, 0.0),
    radius: float = 0.5,
    clip_negative: bool = True,
) -> np.ndarray:
    """Centre of mass of the phase within ``radius`` Å of each column, for each object state.

    The COM is ``sum_p phi(p) r_p / sum_p phi(p)`` over the pixels whose centre lies within
    ``radius`` of the column's reference (e.g. time-averaged) position (paper 003, Fig. 9).

    Args:
        phases: ``[S, x, y]`` phase of each object state (or one ``[x, y]`` image).
        columns: ``[C, 2]`` reference column positions (x, y) in Å.
        pixel_size: Å. origin: (x, y) Å of pixel ``[0, 0]``.
        radius: integration radius in Å.
        clip_negative: set negative phase to 0 before weighting.

    Returns:
        ``[S, C, 2]`` COM positions (x, y) in Å.
    """
    ph = check_grid("phases", phases, (2, 3))
    ph = ph[None] if ph.ndim == 2 else ph
    cols = check_points("columns", columns, 2)
    p = check_positive("pixel_size", pixel_size)
    radius = check_positive("radius", radius)
    idx = angstrom_to_pixel(cols, p, origin)
    half = int(np.ceil(radius / p)) + 1
    off = np.stack(np.meshgrid(*[np.arange(-half, half + 1)] * 2, indexing="ij"), -1)
    cells = np.rint(idx).astype(np.intp)[:, None, :] + off.reshape(1, -1, 2)
    inside = np.sum((cells - idx[:, None, :]) ** 2, axis=-1) <= (radius / p) ** 2
    inside &= np.all((cells >= 0) & (cells < np.asarray(ph.shape[1:])), axis=-1)
    safe = np.where(inside[..., None], cells, 0)
    w = ph[:, safe[..., 0], safe[..., 1]] * inside[None]
    if clip_negative:
        w = np.maximum(w, 0.0)
    xy = pixel_to_angstrom(cells.reshape(-1, 2), p, origin).reshape(cells.shape)
    tot = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("scp,cpd->scd", w, xy) / tot[..., None]


def columns_from_atoms(
    snapshots: ArrayLike, columns: ArrayLike, radius: float = 0.8
) -> np.ndarray:
    """True column positions per MD snapshot: the mean (x, y) of the atoms of each column.

    Atoms are assigned to the nearest column (by their (x, y) in the first snapshot) if within
    ``radius`` Å; a column with no atoms gives NaN.

    Args:
        snapshots: ``[T, N, 3]`` atom positions (x, y, z) in Å for T snapshots.
        columns: ``[C, 2]`` column positions (x, y) in Å.

    Returns:
        ``[T, C, 2]`` column positions (x, y) in Å.
    """
    snap = check_array("snapshots", snapshots, 3)
    cols = check_points("columns", columns, 2)
    radius = check_positive("radius", radius)
    dist, col = cKDTree(cols).query(snap[0, :, :2])
    col = np.where(dist <= radius, col, len(cols))
    out = np.zeros((snap.shape[0], len(cols) + 1, 2))
    counts = np.bincount(col, minlength=len(cols) + 1)
    for d in range(2):
        for t in range(snap.shape[0]):
            out[t, :, d] = np.bincount(col, weights=snap[t, :, d], minlength=len(cols) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out[:, :-1] / counts[None, :-1, None]


def atom_columns(positions: ArrayLike, radius: float = 0.5,
                 box: ArrayLike | None = None) -> np.ndarray:
    """Atomic columns along the beam: the mean (x, y) of each group of atoms whose (x, y) lie
    within ``radius`` Å of one another (single linkage).

    Args:
        positions: ``[N, 3]`` (x, y, z) or ``[N, 2]`` atom positions in Å.
        radius: largest lateral distance in Å between neighbours of one column.
        box: ``(Lx, Ly)`` Å of a laterally periodic cell: distances are minimum-image, so
            that a (tilted) column crossing the cell edge stays one column; centres are
            returned inside ``[0, L)``.

    Returns:
        ``[C, 2]`` column positions (x, y) in Å, sorted by x then y.
    """
    xy = check_points("positions", positions)[:, :2]
    radius = check_positive("radius", radius)
    size = None if box is None else np.asarray(box, dtype=np.float64).reshape(2)
    if size is not None:
        xy = np.mod(xy, size)
    pairs = cKDTree(xy, boxsize=size).query_pairs(radius, output_type="ndarray")
    label = np.arange(len(xy))
    for _ in range(len(xy)):  # propagate the smallest label through the pairs (union-find)
        low = np.minimum(label[pairs[:, 0]], label[pairs[:, 1]]) if len(pairs) else None
        if low is None or np.array_equal(label[pairs[:, 0]], label[pairs[:, 1]]):
            break
        np.minimum.at(label, pairs[:, 0], low)
        np.minimum.at(label, pairs[:, 1], low)
        label = label[label]
    _, col = np.unique(label, return_inverse=True)
    if size is not None:  # each atom's minimum image about the first atom of its column
        first = xy[np.unique(col, return_index=True)[1]][col]
        xy = first + (xy - first) - size * np.round((xy - first) / size)
    counts = np.bincount(col)
    centres = np.stack([np.bincount(col, weights=xy[:, d]) / counts for d in range(2)], -1)
    if size is not None:
        centres = np.mod(centres, size)
    return centres[np.lexsort((centres[:, 1], centres[:, 0]))]


def vibration_spread(
    com: ArrayLike, true_positions: ArrayLike | None = None
) -> dict[str, np.ndarray]:
    """Spread of column positions across object states vs across MD snapshots (paper 003).

    Args:
        com: ``[S, C, 2]`` reconstructed column COMs (x, y) Å per object state.
        true_positions: optional ``[T, C, 2]`` true column positions per MD snapshot.

    Returns:
        dict with ``std_A`` (``[C, 2]`` standard deviation along x and y, Å, population
        ``ddof=0``) and ``rms_A`` (``[C]`` ``sqrt(std_x^2 + std_y^2)``); with the truth also
        ``true_std_A``, ``true_rms_A`` and ``ratio`` (``rms_A / true_rms_A``).
    """
    c = check_array("com", com, 3)
    std = np.std(c, axis=0)
    out = {"std_A": std, "rms_A": np.sqrt(np.sum(std**2, axis=-1))}
    if true_positions is not None:
        t = check_array("true_positions", true_positions, 3)
        if t.shape[1:] != c.shape[1:]:
            raise ValueError(f"true_positions must be [T, {c.shape[1]}, 2], got {t.shape}")
        tstd = np.std(t, axis=0)
        out["true_std_A"] = tstd
        out["true_rms_A"] = np.sqrt(np.sum(tstd**2, axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ratio"] = out["rms_A"] / out["true_rms_A"]
    return out


def tilt_error_mrad(recovered: ArrayLike, true: ArrayLike) -> dict[str, Any]:
    """Error of a recovered mistilt (θx, θy) in mrad: components and magnitude.

    Works for one tilt ``[2]`` or a tilt map ``[..., 2]``.
    """
    r = np.asarray(recovered, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if r.shape != t.shape or r.shape[-1] != 2:
        raise ValueError(f"recovered and true must both be [..., 2] (θx, θy) mrad, got "
                         f"{r.shape} and {t.shape}")
    d = r - t
    return {"error_mrad": d, "magnitude_mrad": np.linalg.norm(d, axis=-1)}


def thickness_error_A(recovered: float, true: float) -> dict[str, float]:
    """Error of a recovered specimen thickness in Å: signed and relative."""
    t = check_positive("true", true)
    d = float(recovered) - t
    return {"error_A": d, "relative": d / t}
