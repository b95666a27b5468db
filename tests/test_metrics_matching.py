"""Matching and scores per CONVENTIONS.md (section Metrics)."""

import json

import numpy as np
import pytest

from metrics.matching import (
    match_atoms,
    match_atoms_dense,
    match_status,
    matched_deviations,
    score_atoms,
)
from metrics.synthetic import random_atoms


def _truth(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = random_atoms(n, (20.0, 20.0, 20.0), 2.4, rng)
    return pos, np.where(rng.random(len(pos)) < 0.4, 8, 56)


def _pairs(m) -> set[tuple[int, int]]:
    return set(zip(m.traced_index.tolist(), m.true_index.tolist(), strict=True))


def test_sparse_equals_dense_on_random_cases() -> None:
    rng = np.random.default_rng(1)
    for _ in range(150):
        n, m = rng.integers(1, 35, size=2)
        true = rng.uniform(0, 6, (n, 3))
        traced = rng.uniform(0, 6, (m, 3))
        r = rng.uniform(0.5, 2.5)  # large r: big connected components
        s, d = match_atoms(traced, true, r), match_atoms_dense(traced, true, r)
        assert _pairs(s) == _pairs(d)
        np.testing.assert_allclose(s.distance, d.distance)


def test_assignment_is_optimal_not_greedy() -> None:
    true = np.array([[0.0, 0, 0], [0.8, 0, 0]])
    # t0 is nearest to true 0 but must take true 1 so that t1 can be matched at all.
    traced = np.array([[0.3, 0, 0], [-0.5, 0, 0]])
    for fn in (match_atoms, match_atoms_dense):
        m = fn(traced, true, 1.0)
        assert _pairs(m) == {(0, 1), (1, 0)}
        np.testing.assert_allclose(m.distance, [0.5, 0.5])
    # distance exactly r_match counts; just above does not.
    assert len(match_atoms([[1.0, 0, 0]], [[0.0, 0, 0]], 1.0)) == 1
    assert len(match_atoms([[1.0 + 1e-9, 0, 0]], [[0.0, 0, 0]], 1.0)) == 0


def test_known_shift_gives_rmsd_equal_to_shift() -> None:
    pos, z = _truth()
    shift = np.array([0.12, -0.25, 0.3])  # |shift| = 0.4085 Å
    s = score_atoms(pos + shift, pos, z, z)
    assert s.tp == len(pos) and s.fp == 0 and s.fn == 0
    assert s.rmsd_pm == pytest.approx(np.linalg.norm(shift) * 100, abs=1e-9)
    assert s.rmsd_offset_removed_pm == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(s.mean_offset_pm, shift * 100, atol=1e-9)
    assert s.classification_rate == 1.0


@pytest.mark.parametrize(("k", "m"), [(0, 3), (5, 0), (7, 4)])
def test_tracing_error_counts_removed_and_spurious(k: int, m: int) -> None:
    pos, z = _truth(2)
    rng = np.random.default_rng(k + 10 * m)
    removed = rng.choice(len(pos), k, replace=False)
    kept = np.setdiff1d(np.arange(len(pos)), removed)
    spurious = pos[rng.choice(kept, m, replace=False)] + [0.0, 0.0, 30.0]  # far from all
    traced = np.concatenate([pos[kept] + rng.normal(0, 0.05, (len(kept), 3)), spurious])
    labels = np.concatenate([z[kept], np.full(m, 56)])
    s = score_atoms(traced, pos, labels, z)
    assert (s.tp, s.fp, s.fn) == (len(pos) - k, m, k)
    assert s.tracing_error == (k + m) / len(pos)
    assert s.classification_rate == (len(pos) - k) / len(pos)


def test_matched_deviations_are_the_displacements_scored() -> None:
    """Known per-atom displacements come back pair by pair (in the true atoms' order), a
    spurious atom, a non-atom and a missing atom are left out, and the RMS of the norms is
    score_atoms' RMSD."""
    rng = np.random.default_rng(4)
    true = random_atoms(30, (12.0, 12.0, 12.0), 2.5, rng)
    offsets = rng.normal(0, 0.08, true.shape)
    traced = true + offsets
    order = rng.permutation(len(true))[:-1]  # shuffled; the true atom order[-1] is missing
    missing = np.setdiff1d(np.arange(len(true)), order)
    extra = np.array([[30.0, 30.0, 30.0], true[missing[0]] + 0.01])  # spurious, non-atom
    pos = np.concatenate([traced[order], extra])
    labels = np.r_[np.ones(len(order), int), 1, 0]
    dev = matched_deviations(pos, true, labels, r_match=1.0)
    np.testing.assert_allclose(dev, np.delete(offsets, missing, axis=0), atol=1e-12)
    rmsd = score_atoms(pos, true, labels, r_match=1.0).rmsd_pm
    assert np.sqrt(np.mean(np.sum(dev**2, axis=1))) * 100 == pytest.approx(rmsd, rel=1e-12)


def test_invariant_to_reordering() -> None:
    pos, z = _truth(3)
    rng = np.random.default_rng(4)
    traced = pos[:-4] + rng.normal(0, 0.1, (len(pos) - 4, 3))
    tl = z[:-4].copy()
    tl[:6] = np.where(tl[:6] == 8, 56, 8)
    ref = score_atoms(traced, pos, tl, z, refine_shift=True).to_dict()
    p1, p2 = rng.permutation(len(traced)), rng.permutation(len(pos))
    got = score_atoms(traced[p1], pos[p2], tl[p1], z[p2], refine_shift=True).to_dict()
    _assert_close(got, ref)


def _assert_close(a: object, b: object) -> None:
    """Recursive equality, floats to 1e-9 relative (summation order may differ)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_close(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    else:
        assert a == b


def test_swapping_species_labels() -> None:
    pos, z = _truth(5)
    n8, n56 = int(np.sum(z == 8)), int(np.sum(z == 56))
    swapped = np.where(z == 8, 56, 8)
    s = score_atoms(pos, pos, swapped, z)
    assert s.tracing_error == 0.0 and s.classification_rate == 0.0
    # Swap j oxygens only: rate (N - j) / N; O recall (n8 - j) / n8; Ba precision n56/(n56 + j).
    j = 5
    idx = np.flatnonzero(z == 8)[:j]
    part = z.copy()
    part[idx] = 56
    s = score_atoms(pos, pos, part, z)
    assert s.classification_rate == (len(pos) - j) / len(pos)
    assert s.per_species["8"]["recall"] == (n8 - j) / n8
    assert s.per_species["8"]["precision"] == 1.0
    assert s.per_species["56"]["recall"] == 1.0
    assert s.per_species["56"]["precision"] == n56 / (n56 + j)


def test_non_atoms_are_dropped_before_matching() -> None:
    pos, z = _truth(6)
    labels = z.copy()
    labels[:3] = 0  # three real atoms traced but called non-atom: they become FN
    s = score_atoms(pos, pos, labels, z)
    assert (s.n_non_atom, s.tp, s.fp, s.fn) == (3, len(pos) - 3, 0, 3)
    t_status, g_status = match_status(pos, pos, labels, z)
    assert list(t_status[:3]) == ["non-atom"] * 3 and np.all(t_status[3:] == "true")
    assert np.sum(g_status == "missing") == 3


def test_refined_shift_is_reported_separately() -> None:
    pos, z = _truth(7)
    rng = np.random.default_rng(8)
    noise = rng.normal(0, 0.03, pos.shape)
    noise -= noise.mean(axis=0)
    shift = np.array([0.5, -0.4, 0.2])
    s = score_atoms(pos + shift + noise, pos, z, z, refine_shift=True)
    assert s.rmsd_pm > 60  # dominated by the shift
    ref = s.shift_refined
    assert ref is not None
    np.testing.assert_allclose(ref["shift_A"], shift, atol=1e-9)
    expected = np.sqrt(np.mean(np.sum(noise**2, axis=1))) * 100
    assert ref["rmsd_pm"] == pytest.approx(expected, rel=1e-9)
    assert ref["tracing_error"] == 0.0


def test_json_serialisation_and_empty_traced() -> None:
    pos, z = _truth(9, 20)
    s = score_atoms(np.zeros((0, 3)), pos, np.zeros(0, int), z)
    d = json.loads(s.to_json())
    assert d["tp"] == 0 and d["fn"] == len(pos) and d["tracing_error"] == 1.0
    assert d["rmsd_pm"] is None  # NaN -> null
    assert d["per_species"]["8"]["precision"] is None


def test_two_dimensional_columns() -> None:
    true = np.array([[0.0, 0.0], [3.9, 0.0]])
    s = score_atoms(true + [0.03, 0.04], true)
    assert s.rmsd_pm == pytest.approx(5.0)
    assert s.classification_rate is None


def test_bad_inputs_raise_clear_errors() -> None:
    pos, z = _truth(9, 10)
    with pytest.raises(ValueError, match="r_match"):
        score_atoms(pos, pos, r_match=-1)
    with pytest.raises(ValueError, match="traced_labels"):
        score_atoms(pos, pos, z[:-1], z)
    with pytest.raises(ValueError, match="true_positions must hold at least one"):
        score_atoms(pos, np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"traced_positions must have shape"):
        score_atoms(pos[:, :1], pos)
