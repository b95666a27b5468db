"""The scorer registry: every estimate a method returns is scored against the dataset's truth.

A :class:`Scorer` reads one estimate kind (a field of :class:`reconstruct.result.Reconstruction`,
e.g. ``volume``, ``atoms``, ``tilt``, ``geometry``, ``object_states``) and applies when the
reconstruction has that estimate and the dataset holds every truth array it needs. It returns
flat, JSON-ready metrics and names the headline ones (``columns``) that the results table shows.
The job, the collector and the rescorer loop over :data:`SCORERS`; they hold no per-method
code. The built-in scorers are in :mod:`experiments.scorers`.

Estimates arrive flat and as numpy (``volume``, ``atoms.positions``, ``geometry.euler_deg``...,
see :meth:`Reconstruction.estimates`). Keys of a scorer's result that start with ``_`` go to its
figures only, never to ``metrics.json``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reconstruct.result import estimate_kinds
from reconstruct.variants.base import add_unique
from simulate.fileio import strict_json


@dataclass
class ScoringConfig:
    """Scoring settings (lengths in Å).

    ``sigma`` smooths before tracing and classification (paper 001 uses 0.3 Å);
    ``min_distance`` rejects peaks closer than that; ``radius`` is the integration sphere;
    ``threshold_fraction`` drops maxima below that fraction of the volume maximum (a support);
    ``non_atom`` as in :func:`metrics.classify_species`: True (default, paper 001) always fits
    a non-atom class below the species, so that noise maxima are dropped before matching;
    None decides from valleys in the histogram; False never. ``r_match`` pairs atoms within
    that distance. ``column_radius`` is the centre-of-mass radius of an atomic column in the
    object states (paper 003) and the distance within which atoms form one column.
    ``half_sets`` ``none|poisson|subsample`` adds the FSC between two half-set
    reconstructions (``experiments/halfsets.py``), ``half_subsample`` the fraction (1/n) of
    the scan rows each subsampled half holds.
    """

    sigma: float = 0.3
    min_distance: float = 2.0
    radius: float = 0.8
    r_match: float = 1.0
    threshold_fraction: float = 0.05
    method: str = "kmeans"
    non_atom: bool | None = True
    column_radius: float = 0.5
    half_sets: str = "none"
    half_subsample: int = 2


class Truth:
    """The ground truth of a dataset as the scorers read it: stored arrays by path
    (``truth/positions``, ``geometry/euler_deg``...), read once, and the voxel grid."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.voxel_size = float(ds.meta["voxel_size_A"])
        self.origin = np.asarray(ds.meta["origin_xyz_A"], dtype=np.float64)
        self._cache: dict[str, np.ndarray] = {}

    def has(self, name: str) -> bool:
        """Whether ``name`` is stored; ``a|b`` asks for either."""
        return any(self.ds.has(n) for n in name.split("|"))

    def array(self, name: str) -> np.ndarray:
        """The stored array ``name`` (the first present of ``a|b``)."""
        first = next(n for n in name.split("|") if self.ds.has(n))
        if first not in self._cache:
            self._cache[first] = self.ds.array(first)
        return self._cache[first]


Estimates = dict[str, np.ndarray]
ScoreFn = Callable[[Estimates, Truth, ScoringConfig], dict[str, Any]]
FigureFn = Callable[[Path, Estimates, dict[str, Any], Truth], None]


@dataclass(frozen=True)
class Scorer:
    """A registered scorer of the estimate kind ``estimate``, applicable when every array of
    ``truth`` is stored; ``columns`` are its headline metrics, in table order (``fnmatch``
    patterns such as ``recall_*`` allowed); ``labels`` their headers with units in the
    markdown table (``{}`` stands for what a pattern's ``*`` matched); ``figures`` draws its
    figures into a job dir; ``rank_by`` names a column (lower is better) that orders the
    algorithms in the table's summary line."""

    name: str
    estimate: str
    truth: tuple[str, ...]
    score: ScoreFn
    columns: tuple[str, ...]
    figures: FigureFn | None = None
    labels: dict[str, str] = field(default_factory=dict)
    rank_by: str | None = None  # the column (lower is better) that orders the algorithms

    def applies(self, estimates: Estimates, truth: Truth) -> bool:
        return self.estimate in estimate_kinds(estimates) and all(truth.has(t) for t in self.truth)


SCORERS: dict[str, Scorer] = {}


def register_scorer(scorer: Scorer) -> Scorer:
    """Add ``scorer`` to :data:`SCORERS` (names are unique)."""
    return add_unique(SCORERS, scorer, "scorer")


def _non_finite(estimates: Estimates) -> list[str]:
    return sorted(k for k, v in estimates.items()
                  if np.asarray(v).dtype.kind in "fc" and not np.all(np.isfinite(v)))


def score_or_fail(estimates: Estimates, error: str | None, truth: Truth,
                  cfg: ScoringConfig) -> dict[str, Any]:
    """Every applicable scorer's metrics with ``status: ok``, or ``status: failed`` with the
    reason (an error, or an estimate holding NaN/inf) and no scores. ``score_keys`` lists the
    keys the scorers wrote (what a re-score replaces); ``scorers`` their names."""
    if error is None and (bad := _non_finite(estimates)):
        error = f"the reconstruction holds NaN or inf ({', '.join(bad)})"
    if error is not None:
        return {"status": "failed", "error": error, "score_keys": ["status", "error"]}
    out: dict[str, Any] = {"status": "ok"}
    used = []
    for scorer in SCORERS.values():
        if scorer.applies(estimates, truth):
            out |= scorer.score(estimates, truth, cfg)
            used.append(scorer.name)
    out["scorers"] = used
    out["score_keys"] = sorted({*out, "error"} - {"score_keys"})
    return out


def score_figures(out_dir: Path, estimates: Estimates, result: dict[str, Any],
                  truth: Truth) -> None:
    """The figures of every scorer that scored ``result``."""
    if result.get("status") != "ok":
        return
    for name in result.get("scorers", []):
        scorer = SCORERS.get(name)
        if scorer is not None and scorer.figures is not None:
            scorer.figures(out_dir, estimates, result, truth)


def public(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without its figure-only (``_``) keys, NaN written as null (valid JSON)."""
    return strict_json({k: v for k, v in result.items() if not k.startswith("_")})


def table_columns(available: Iterable[str]) -> list[str]:
    """The results table's metric columns present in ``available``: ``status`` (and ``error``
    when a job failed), then each scorer's headline columns in registry order (patterns
    expanded, sorted), then the time per iteration."""
    available = list(available)
    out = ["status", "error"]
    for scorer in SCORERS.values():
        for pattern in scorer.columns:
            out += [c for c in sorted(fnmatch.filter(available, pattern)) if c not in out]
    out.append("seconds_per_iteration")
    return [c for c in out if c in available]


RUN_LABELS = {"status": "status", "error": "error", "seconds_per_iteration": "s/iteration"}


def ranking_column(available: Iterable[str]) -> str | None:
    """The first registered scorer's ``rank_by`` column present in ``available``."""
    cols = set(available)
    return next((s.rank_by for s in SCORERS.values() if s.rank_by in cols), None)


def column_label(column: str) -> str:
    """The markdown header of a results column: the scorer's label with units, else the name."""
    if column in RUN_LABELS:
        return RUN_LABELS[column]
    for scorer in SCORERS.values():
        for pattern, label in scorer.labels.items():
            if fnmatch.fnmatchcase(column, pattern):
                star = pattern.index("*") if "*" in pattern else len(pattern)
                return label.format(column[star:len(column) - (len(pattern) - star - 1)])
    return column


from experiments import scorers as _builtin  # noqa: E402,F401  (registers the built-in scorers)
