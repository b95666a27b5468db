"""Matching traced atoms to the ground truth and the scores of CONVENTIONS.md (section Metrics).

Matching: traced atoms labelled non-atom are dropped; the rest are paired one to one with the
true atoms by ``scipy.optimize.linear_sum_assignment`` on distance, where a pair farther apart
than ``r_match`` (Å) is forbidden (given a cost larger than any allowed matching). The result
is the matching with the most pairs within ``r_match`` and, among those, the least total
distance. :func:`match_atoms` finds it with a sparse method (cKDTree neighbours within
``r_match``, then one assignment per connected component of the neighbour graph), which scales
to 10^5 atoms; :func:`match_atoms_dense` is the dense N x M reference it is tested against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from metrics.grid import ArrayLike, check_points, check_positive

PM_PER_A = 100.0


@dataclass
class AtomMatch:
    """One-to-one pairs: ``traced_index[k]`` <-> ``true_index[k]`` at ``distance[k]`` Å."""

    traced_index: np.ndarray
    true_index: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return int(self.traced_index.shape[0])


def _as_match(ti: np.ndarray, gi: np.ndarray, d: np.ndarray) -> AtomMatch:
    order = np.argsort(gi, kind="stable")
    return AtomMatch(ti[order].astype(np.intp), gi[order].astype(np.intp), d[order])


def _solve_block(dist: np.ndarray, allowed: np.ndarray, r_match: float) -> tuple:
    """Restricted assignment on a small block; returns the allowed (row, col) pairs."""
    big = r_match * (min(dist.shape) + 1) + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, dist, big))
    ok = allowed[rows, cols]
    return rows[ok], cols[ok]


def match_atoms_dense(traced: ArrayLike, true: ArrayLike, r_match: float = 1.0) -> AtomMatch:
    """Reference matching with a dense ``[M, N]`` distance matrix (small inputs only).

    Args:
        traced: ``[M, d]`` traced positions in Å. true: ``[N, d]`` true positions in Å.
        r_match: largest allowed pair distance in Å.
    """
    a, b = check_points("traced", traced), check_points("true", true)
    r = check_positive("r_match", r_match)
    if len(a) == 0 or len(b) == 0:
        return _as_match(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    dist = cdist(a, b)
    rows, cols = _solve_block(dist, dist <= r, r)
    return _as_match(rows, cols, dist[rows, cols])


def match_atoms(traced: ArrayLike, true: ArrayLike, r_match: float = 1.0) -> AtomMatch:
    """Sparse one-to-one matching, equal to :func:`match_atoms_dense` (up to exact ties).

    Args:
        traced: ``[M, d]`` traced positions in Å (d = 2 or 3, same as ``true``).
        true: ``[N, d]`` ground-truth positions in Å.
        r_match: largest allowed pair distance in Å (default 1.0).

    Returns:
        :class:`AtomMatch` sorted by true index.
    """
    a, b = check_points("traced", traced), check_points("true", true)
    r = check_positive("r_match", r_match)
    if len(a) == 0 or len(b) == 0:
        return _as_match(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"traced and true must have the same dimension, got {a.shape} and "
                         f"{b.shape}")
    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), r, output_type="ndarray")
    ei, ej, ed = pairs["i"].astype(np.intp), pairs["j"].astype(np.intp), pairs["v"]
    sel = ed <= r
    ei, ej, ed = ei[sel], ej[sel], ed[sel]
    m = len(a)
    graph = coo_matrix((np.ones(len(ei)), (ei, ej + m)), shape=(m + len(b), m + len(b)))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[ei]
    n_edges = np.bincount(edge_comp, minlength=comp.max() + 1)
    single = n_edges[edge_comp] == 1
    out_t, out_g, out_d = [ei[single]], [ej[single]], [ed[single]]
    multi = np.flatnonzero(~single)
    multi = multi[np.argsort(edge_comp[multi], kind="stable")]
    bounds = np.flatnonzero(np.diff(edge_comp[multi])) + 1
    for block in np.split(multi, bounds) if len(multi) else []:
        ti, ri = np.unique(ei[block], return_inverse=True)
        gi, ci = np.unique(ej[block], return_inverse=True)
        dist = np.full((len(ti), len(gi)), np.inf)
        dist[ri, ci] = ed[block]
        rows, cols = _solve_block(np.where(np.isinf(dist), 0.0, dist), np.isfinite(dist), r)
        out_t.append(ti[rows])
        out_g.append(gi[cols])
        out_d.append(dist[rows, cols])
    return _as_match(np.concatenate(out_t), np.concatenate(out_g), np.concatenate(out_d))


def _json_ready(obj: Any) -> Any:
    """Recursively convert numpy types to Python ones and NaN to None."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else float(obj)
    return obj


@dataclass
class AtomScores:
    """Scores of a traced model against the ground truth (units in the field names).

    ``classification_rate`` and ``per_species`` are None when no labels were given.
    ``per_species`` maps a label to ``{n_true, n_traced, n_correct, precision, recall}``.
    ``shift_refined`` (only with ``refine_shift=True``) holds the same scores after refining a
    global rigid shift, ``shift_A`` (x, y, z) being subtracted from the traced positions.
    """

    r_match_A: float
    n_true: int
    n_traced: int
    n_non_atom: int
    tp: int
    fp: int
    fn: int
    rmsd_pm: float
    rmsd_offset_removed_pm: float
    mean_offset_pm: list[float]
    tracing_error: float
    classification_rate: float | None
    per_species: dict[str, dict[str, float | int | None]] | None
    shift_refined: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numpy scalars converted, NaN -> None)."""
        return _json_ready(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        """Serialise :meth:`to_dict` to a JSON string."""
        return json.dumps(self.to_dict(), **kwargs)


def _check_labels(name: str, labels: ArrayLike | None, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels).reshape(-1)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be {n} integers (one per atom), got dtype {arr.dtype} "
                         f"and shape {np.shape(labels)}")
    return arr


def _per_species(tl: np.ndarray, gl: np.ndarray, m: AtomMatch) -> dict[str, dict]:
    correct = tl[m.traced_index] == gl[m.true_index]
    out: dict[str, dict] = {}
    for s in np.union1d(np.unique(gl), np.unique(tl)):
        n_true, n_traced = int(np.sum(gl == s)), int(np.sum(tl == s))
        n_ok = int(np.sum(correct & (gl[m.true_index] == s)))
        out[str(int(s))] = {
            "n_true": n_true,
            "n_traced": n_traced,
            "n_correct": n_ok,
            "precision": n_ok / n_traced if n_traced else None,
            "recall": n_ok / n_true if n_true else None,
        }
    return out


def _core_scores(
    a: np.ndarray, b: np.ndarray, tl: np.ndarray | None, gl: np.ndarray | None, r: float
) -> tuple[dict[str, Any], AtomMatch]:
    """Scores of kept traced atoms ``a`` against true atoms ``b`` (labels already filtered)."""
    m = match_atoms(a, b, r)
    tp = len(m)
    diff = a[m.traced_index] - b[m.true_index]
    nan = float("nan")
    mean = diff.mean(axis=0) if tp else np.full(b.shape[1], nan)
    rmsd = float(np.sqrt(np.mean(np.sum(diff**2, axis=1)))) if tp else nan
    rmsd0 = float(np.sqrt(np.mean(np.sum((diff - mean) ** 2, axis=1)))) if tp else nan
    n_correct = None
    if tl is not None and gl is not None:
        n_correct = int(np.sum(tl[m.traced_index] == gl[m.true_index]))
    scores = {
        "tp": tp,
        "fp": len(a) - tp,
        "fn": len(b) - tp,
        "rmsd_pm": rmsd * PM_PER_A,
        "rmsd_offset_removed_pm": rmsd0 * PM_PER_A,
        "mean_offset_pm": [float(x) * PM_PER_A for x in mean],
        "tracing_error": (len(a) - tp + len(b) - tp) / len(b),
        "classification_rate": None if n_correct is None else n_correct / len(b),
    }
    return scores, m


def _refine_shift(
    a: np.ndarray,
    b: np.ndarray,
    tl: np.ndarray | None,
    gl: np.ndarray | None,
    r: float,
    max_iter: int,
) -> dict[str, Any]:
    """Iterate match -> subtract mean offset; return the scores at the converged shift."""
    shift = np.zeros(b.shape[1])
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        ref, _ = _core_scores(a - shift, b, tl, gl, r)
        step = np.asarray(ref["mean_offset_pm"]) / PM_PER_A
        if not np.all(np.isfinite(step)):
            break
        shift = shift + step
        if np.linalg.norm(step) < 1e-9:
            break
    refined, _ = _core_scores(a - shift, b, tl, gl, r)
    refined.update(shift_A=[float(x) for x in shift], iterations=iterations)
    return refined


def score_atoms(
    traced_positions: ArrayLike,
    true_positions: ArrayLike,
    traced_labels: ArrayLike | None = None,
    true_labels: ArrayLike | None = None,
    *,
    r_match: float = 1.0,
    non_atom_label: int = 0,
    refine_shift: bool = False,
    max_iter: int = 20,
) -> AtomScores:
    """Score traced atoms against the ground truth (CONVENTIONS.md, section Metrics).

    Args:
        traced_positions: ``[M, 3]`` (x, y, z) Å (or ``[M, 2]`` for columns).
        true_positions: ``[N, 3]`` (x, y, z) Å, N >= 1.
        traced_labels: ``[M]`` int species labels (e.g. atomic numbers); those equal to
            ``non_atom_label`` are dropped before matching. None: all traced atoms are kept.
        true_labels: ``[N]`` int species labels of the true atoms.
        r_match: largest distance in Å for a pair to count (default 1.0).
        non_atom_label: label of the non-atom class (default 0).
        refine_shift: also report the scores after refining a global rigid shift
            (iterated: match, subtract the mean offset, re-match; needs an initial overlap).
        max_iter: iterations of the shift refinement.

    Returns:
        :class:`AtomScores`. RMSDs are in pm; tracing error = (FP + FN) / N_true;
        classification rate = (TP with the correct species) / N_true.
    """
    a = check_points("traced_positions", traced_positions)
    b = check_points("true_positions", true_positions)
    r = check_positive("r_match", r_match)
    if len(b) == 0:
        raise ValueError("true_positions must hold at least one atom, got 0")
    if len(a) and a.shape[1] != b.shape[1]:
        raise ValueError(f"traced_positions {a.shape} and true_positions {b.shape} differ in "
                         "dimension")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    tl = _check_labels("traced_labels", traced_labels, len(a))
    gl = _check_labels("true_labels", true_labels, len(b))
    n_non = 0
    if tl is not None:
        keep = tl != non_atom_label
        n_non = int(np.sum(~keep))
        a, tl = a[keep], tl[keep]
    scores, m = _core_scores(a, b, tl, gl, r)
    per = _per_species(tl, gl, m) if tl is not None and gl is not None else None
    refined = _refine_shift(a, b, tl, gl, r, max_iter) if refine_shift else None
    return AtomScores(r_match_A=r, n_true=len(b), n_traced=len(a), n_non_atom=n_non,
                      per_species=per, shift_refined=refined, **scores)


def match_status(
    traced_positions: ArrayLike,
    true_positions: ArrayLike,
    traced_labels: ArrayLike | None = None,
    true_labels: ArrayLike | None = None,
    *,
    r_match: float = 1.0,
    non_atom_label: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom status for figures (paper 001 Fig. 3).

    Returns:
        ``traced_status [M]``: "true" (matched, correct species), "false" (unmatched, or wrong
        species) or "non-atom"; ``true_status [N]``: "found" or "missing" (not traced, or
        traced as a non-atom).
    """
    a = check_points("traced_positions", traced_positions)
    b = check_points("true_positions", true_positions)
    tl = _check_labels("traced_labels", traced_labels, len(a))
    gl = _check_labels("true_labels", true_labels, len(b))
    keep = np.ones(len(a), bool) if tl is None else tl != non_atom_label
    kept = np.flatnonzero(keep)
    m = match_atoms(a[kept], b, r_match)
    traced_status = np.where(keep, "false", "non-atom").astype(object)
    ok = np.ones(len(m), bool)
    if tl is not None and gl is not None:
        ok = tl[kept[m.traced_index]] == gl[m.true_index]
    traced_status[kept[m.traced_index[ok]]] = "true"
    true_status = np.full(len(b), "missing", dtype=object)
    true_status[m.true_index] = "found"
    return traced_status, true_status


def matched_deviations(
    traced_positions: ArrayLike,
    true_positions: ArrayLike,
    traced_labels: ArrayLike | None = None,
    *,
    r_match: float = 1.0,
    non_atom_label: int = 0,
) -> np.ndarray:
    """Displacements ``traced - true`` ``[K, d]`` in Å of the K matched pairs (paper 004
    Fig. 4), in the order of the true atoms; traced atoms labelled ``non_atom_label`` are
    dropped first, as :func:`score_atoms` does, so the RMS of their norms is its RMSD."""
    a = check_points("traced_positions", traced_positions)
    b = check_points("true_positions", true_positions)
    tl = _check_labels("traced_labels", traced_labels, len(a))
    if tl is not None:
        a = a[tl != non_atom_label]
    m = match_atoms(a, b, r_match)
    return a[m.traced_index] - b[m.true_index]
