"""Every built-in scorer against a known answer, and the scorer registry's behaviour.

No simulation: a small fake dataset (``meta``, ``has``, ``array`` over a dict of numpy arrays)
is wrapped in :class:`experiments.scoring.Truth`, and the estimates come from
:meth:`reconstruct.result.Reconstruction.estimates` (which also tests the flattening). Units as
in CONVENTIONS.md (Metrics): RMSD pm, tilts mrad, Euler angles degrees, shifts Å.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from experiments.scoring import (
    SCORERS,
    ScoringConfig,
    Truth,
    public,
    score_or_fail,
    table_columns,
)
from metrics import euler_to_matrix, matrix_to_euler
from metrics import r_factor as metrics_r_factor
from reconstruct.fit import r_factor as fit_r_factor
from reconstruct.loop import History
from reconstruct.result import AtomsEstimate, GeometryEstimate, Reconstruction

CU, AU = 29, 79
VOXEL = 0.4  # Å
ORIGIN = (-5.6, -4.8, -5.2)  # (x, y, z) Å of voxel [0, 0, 0]; distinct per axis on purpose
SHAPE = (26, 28, 24)  # [z, x, y]: z in [-5.2, 4.8], x in [-5.6, 5.2], y in [-4.8, 4.4] Å
CFG = ScoringConfig()


class FakeDataset:
    """The dataset interface :class:`Truth` reads: ``meta``, ``has`` and ``array``."""

    def __init__(self, arrays: dict[str, np.ndarray], voxel_size: float = VOXEL,
                 origin: tuple[float, float, float] = ORIGIN) -> None:
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.meta = {"voxel_size_A": voxel_size, "origin_xyz_A": list(origin)}

    def has(self, name: str) -> bool:
        return name in self.arrays

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name]


def make_truth(**arrays: np.ndarray) -> Truth:
    """A :class:`Truth` over ``arrays``, keyword ``a__b`` naming the stored path ``a/b``."""
    return Truth(FakeDataset({k.replace("__", "/"): v for k, v in arrays.items()}))


def score(truth: Truth, cfg: ScoringConfig = CFG, **estimates: Any) -> dict[str, Any]:
    """``score_or_fail`` of a :class:`Reconstruction` holding ``estimates``."""
    rec = Reconstruction(history=History(), **estimates)
    return score_or_fail(rec.estimates(), None, truth, cfg)


def lattice_atoms(jitter: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """18 atoms ``[N, 3]`` Å on a 3 Å lattice (x, y in {-3, 0, 3}, z in {-1.5, 1.5}) with
    uniform sub-voxel ``jitter``, and their numbers: Au where i + j + k is even, else Cu."""
    rng = np.random.default_rng(seed)
    grid = np.array([(x, y, z) for x in (-3.0, 0.0, 3.0) for y in (-3.0, 0.0, 3.0)
                     for z in (-1.5, 1.5)])
    idx = np.array([(i, j, k) for i in range(3) for j in range(3) for k in range(2)])
    numbers = np.where(idx.sum(axis=1) % 2 == 0, AU, CU)
    return grid + rng.uniform(-jitter, jitter, grid.shape), numbers


def render_volume(positions: np.ndarray, heights: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blobs of ``heights`` and width ``sigma`` Å at ``positions`` (x, y, z) Å on the
    ``[z, x, y]`` grid of the fake meta (voxel ``[k, i, j]`` at origin + (i, j, k) * voxel)."""
    z = ORIGIN[2] + VOXEL * np.arange(SHAPE[0])
    x = ORIGIN[0] + VOXEL * np.arange(SHAPE[1])
    y = ORIGIN[1] + VOXEL * np.arange(SHAPE[2])
    zz, xx, yy = np.meshgrid(z, x, y, indexing="ij")
    vol = np.zeros(SHAPE)
    for (px, py, pz), h in zip(positions, heights, strict=True):
        vol += h * np.exp(-((xx - px) ** 2 + (yy - py) ** 2 + (zz - pz) ** 2) / (2 * sigma**2))
    return vol


# --- atoms (matched directly) ---------------------------------------------------------------


def test_atoms_true_atoms_score_perfectly_and_a_shift_gives_its_length() -> None:
    pos, z = lattice_atoms(jitter=0.2)
    truth = make_truth(truth__positions=pos, truth__numbers=z)
    r = score(truth, atoms=AtomsEstimate(positions=torch.from_numpy(pos), numbers=z))
    assert r["status"] == "ok" and r["scorers"] == ["atoms"]
    assert r["rmsd_pm"] == 0.0 and r["rmsd_offset_removed_pm"] == 0.0
    assert r["tracing_error"] == 0.0 and r["classification_rate"] == 1.0
    assert (r["tp"], r["fp"], r["fn"], r["n_true"]) == (18, 0, 0, 18)
    assert r["recall_Cu"] == 1.0 and r["recall_Au"] == 1.0

    d = np.array([0.3, -0.4, 0.5])  # |d| = 0.707 Å < r_match = 1 Å
    r = score(truth, atoms=AtomsEstimate(positions=pos + d, numbers=z))
    assert r["rmsd_pm"] == pytest.approx(np.linalg.norm(d) * 100, rel=1e-12)
    assert r["rmsd_offset_removed_pm"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(r["scores"]["mean_offset_pm"], d * 100, rtol=1e-12)
    assert r["tp"] == 18 and r["classification_rate"] == 1.0


def test_atoms_wrong_species_extra_atom_and_non_atom_label() -> None:
    pos, z = lattice_atoms(jitter=0.2)
    truth = make_truth(truth__positions=pos, truth__numbers=z)
    n, n_au = len(z), int(np.sum(z == AU))
    wrong = z.copy()
    wrong[np.flatnonzero(z == AU)[0]] = CU  # one Au called Cu
    r = score(truth, atoms=AtomsEstimate(positions=pos, numbers=wrong))
    assert r["classification_rate"] == pytest.approx((n - 1) / n, rel=1e-12)
    assert r["recall_Au"] == pytest.approx(1 - 1 / n_au, rel=1e-12)
    assert r["recall_Cu"] == 1.0
    assert (r["tp"], r["fp"], r["fn"], r["tracing_error"]) == (n, 0, 0, 0.0)

    far = np.vstack([pos, [40.0, 40.0, 40.0]])  # an extra atom far from every true one
    r = score(truth, atoms=AtomsEstimate(positions=far, numbers=np.append(z, CU)))
    assert (r["tp"], r["fp"], r["fn"]) == (n, 1, 0)
    assert r["tracing_error"] == pytest.approx(1 / n, rel=1e-12)
    assert r["classification_rate"] == 1.0

    # Label 0 (not an atom) is dropped before matching: a non-atom exactly on true atom 0 (whose
    # correct estimate is removed) is neither an FP nor a match, so atom 0 is missed.
    est = np.vstack([pos[1:], pos[0], [40.0, 40.0, 40.0]])
    numbers = np.concatenate([z[1:], [0, 0]])
    r = score(truth, atoms=AtomsEstimate(positions=est, numbers=numbers))
    assert (r["tp"], r["fp"], r["fn"]) == (n - 1, 0, 1)
    assert r["scores"]["n_non_atom"] == 2 and r["scores"]["n_traced"] == n - 1
    assert r["tracing_error"] == pytest.approx(1 / n, rel=1e-12)
    assert r["classification_rate"] == pytest.approx((n - 1) / n, rel=1e-12)
    missed = "recall_Au" if z[0] == AU else "recall_Cu"
    assert r[missed] == pytest.approx(1 - 1 / np.sum(z == z[0]), rel=1e-12)


# --- traced_atoms and fsc on a rendered volume ----------------------------------------------


def lattice_with_ghosts() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A jittered Cu/Au lattice rendered with four faint noise maxima (the non-atom class):
    positions, numbers, the maxima and the volume."""
    pos, z = lattice_atoms(jitter=0.3, seed=1)
    ghosts = np.array([(x, y, 0.0) for x in (-1.5, 1.5) for y in (-1.5, 1.5)])
    heights = np.concatenate([np.where(z == AU, 3.0, 1.0), np.full(len(ghosts), 0.25)])
    return pos, z, ghosts, render_volume(np.vstack([pos, ghosts]), heights, sigma=0.4)


def test_traced_atoms_and_fsc_on_a_rendered_volume() -> None:
    pos, z, ghosts, vol = lattice_with_ghosts()
    truth = make_truth(truth__positions=pos, truth__numbers=z, truth__potential=vol)
    r = score(truth, volume=torch.from_numpy(vol))
    assert r["status"] == "ok" and r["scorers"] == ["traced_atoms", "fsc", "elongation"]
    assert r["elongation"] == pytest.approx(1.0, abs=0.05)  # round peaks: no missing wedge
    # The four faint maxima form the non-atom class and are dropped; every atom is found.
    assert r["scores"]["n_non_atom"] == len(ghosts)
    assert (r["tp"], r["fp"], r["fn"], r["tracing_error"]) == (len(z), 0, 0, 0.0)
    assert r["rmsd_pm"] < 0.5  # exact log-quadratic refinement of (smoothed) Gaussian peaks
    assert r["classification_rate"] == 1.0
    assert r["recall_Cu"] == 1.0 and r["recall_Au"] == 1.0
    traced = r["_traced"]
    assert sorted(traced["labels"].tolist()) == sorted([0] * len(ghosts) + z.tolist())
    # FSC of identical volumes is 1 in every shell: no crossing -> the Nyquist period 2 v.
    assert r["fsc_resolution_A"] == pytest.approx(2 * VOXEL, rel=1e-12)


def test_the_depth_section_marks_the_traced_atoms_it_found() -> None:
    """Every atom of a rendered volume is traced, so the x-z section draws none as missing
    (it drew every atom as missing when it was not handed the traced ones)."""
    from experiments.scorers import depth_section

    pos, z, _, vol = lattice_with_ghosts()
    truth = make_truth(truth__positions=pos, truth__numbers=z, truth__potential=vol)
    r = score(truth, volume=torch.from_numpy(vol))
    assert r["tp"] == len(z)
    legend = [t.get_text() for t in depth_section({"volume": vol}, r, truth).axes[0]
              .get_legend().get_texts()]
    assert legend[2] == "missing (0)" and legend[1] == "false (0)"
    assert int(legend[0].split("(")[1].rstrip(")")) > 0


def test_fsc_known_crossing_against_a_sign_flipped_truth() -> None:
    """A truth equal to the volume up to shell s0 - 1 and its negative from shell s0 on has
    FSC 1 then -1; the 0.5 crossing, interpolated linearly, lies at shell s0 - 1 + 1/4."""
    pos, z = lattice_atoms(jitter=0.3, seed=2)
    vol = render_volume(pos, np.where(z == AU, 3.0, 1.0), sigma=0.4)
    n, s0 = min(SHAPE), 5
    dk = 1.0 / (n * VOXEL)  # shell width (metrics.resolution: N = min(shape))
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(m, VOXEL) for m in SHAPE],
                                               indexing="ij")))
    spectrum = np.fft.fftn(vol)
    spectrum[np.rint(k / dk) >= s0] *= -1
    flipped = np.fft.ifftn(spectrum).real
    truth = make_truth(truth__potential=flipped)
    r = score(truth, volume=vol)
    assert r["scorers"] == ["fsc"]  # no atoms in the truth: no tracing
    # d(s0-1) = 1 - 0.5, d(s0) = -1 - 0.5: t = 0.5 / 2 = 0.25.
    assert r["fsc_resolution_A"] == pytest.approx(1 / ((s0 - 0.75) * dk), rel=1e-9)


# --- tilt and tilt_map ----------------------------------------------------------------------


def test_tilt_error_is_the_norm_of_the_difference() -> None:
    truth = make_truth(truth__truth_tilt_mrad=np.array([0.5, 1.0]))
    r = score(truth, tilt=torch.tensor([3.5, -3.0]))
    assert r["scorers"] == ["tilt"]
    assert r["tilt_error_mrad"] == pytest.approx(5.0, rel=1e-12)  # |(3, -4)|
    assert r["tilt_mrad"] == [3.5, -3.0]


def test_tilt_map_mean_and_max_with_one_wrong_pixel() -> None:
    sx, sy = 3, 4
    rng = np.random.default_rng(3)
    field = rng.normal(0.0, 2.0, (2, sx * sy, 2))  # [T, sx*sy, 2]; tilt 1 differs from tilt 0
    truth = make_truth(truth__truth_tilt_at_positions=field)
    est = field[0].reshape(sx, sy, 2).copy()  # row-major: pixel (i, j) <-> i * sy + j
    r = score(truth, tilt_map=est)
    assert r["tilt_map_error_mean_mrad"] == pytest.approx(0.0, abs=1e-12)
    assert r["tilt_map_error_max_mrad"] == pytest.approx(0.0, abs=1e-12)
    est[1, 2] += (3.0, -4.0)
    r = score(truth, tilt_map=est)
    assert r["tilt_map_error_mean_mrad"] == pytest.approx(5.0 / (sx * sy), rel=1e-12)
    assert r["tilt_map_error_max_mrad"] == pytest.approx(5.0, rel=1e-12)


# --- geometry and positions -----------------------------------------------------------------


def test_geometry_gauge_is_removed_and_a_known_shift_error_remains() -> None:
    t = 7
    rng = np.random.default_rng(4)
    euler = np.stack([rng.normal(0, 1, t), np.linspace(-60, 60, t), rng.normal(0, 2, t)], 1)
    shifts = rng.normal(0.0, 1.5, (t, 2))
    truth = make_truth(geometry__euler_deg=euler, geometry__shifts=shifts)
    g = euler_to_matrix([[5.0, -3.0, 10.0]])[0]  # the global rotation, R_j -> R_j G
    euler_est = matrix_to_euler(euler_to_matrix(euler) @ g)
    c = np.array([0.7, -1.1])  # the common shift
    r = score(truth, geometry=GeometryEstimate(euler_deg=euler_est, shifts=shifts + c))
    assert r["scorers"] == ["geometry"]
    for key in ("shift_error_mean_A", "shift_error_max_A", "rotation_error_mean_deg",
                "rotation_error_max_deg"):
        assert r[key] == pytest.approx(0.0, abs=1e-6), key
    np.testing.assert_allclose(r["gauge_shift_A"], c, atol=1e-12)

    # Tilt 0 off by δ = 0.3 Å: the fitted common shift is c + δ / T (the mean), so tilt 0 errs
    # by 0.3 (T - 1) / T and each other tilt by 0.3 / T.
    delta = np.array([0.3, 0.0])
    bad = shifts + c
    bad[0] += delta
    r = score(truth, geometry=GeometryEstimate(euler_deg=euler_est, shifts=bad))
    assert r["shift_error_max_A"] == pytest.approx(0.3 * (t - 1) / t, rel=1e-9)
    assert r["shift_error_mean_A"] == pytest.approx(2 * 0.3 * (t - 1) / t**2, rel=1e-9)
    np.testing.assert_allclose(r["gauge_shift_A"], c + delta / t, atol=1e-12)
    assert r["rotation_error_max_deg"] == pytest.approx(0.0, abs=1e-6)


def test_positions_error_after_each_tilts_mean_offset() -> None:
    t, p = 3, 25
    rng = np.random.default_rng(5)
    true = rng.uniform(0.0, 20.0, (t, p, 2))
    truth = make_truth(geometry__positions=true)
    offsets = rng.normal(0.0, 2.0, (t, 1, 2))
    r = score(truth, positions=torch.from_numpy(true + offsets))
    assert r["scorers"] == ["positions"]
    assert r["position_error_rms_A"] == pytest.approx(0.0, abs=1e-12)
    e = rng.normal(0.0, 0.1, (t, p, 2))
    total = 0.0
    for j in range(t):  # by hand: remove each tilt's mean error, then the RMS of |d|
        d = e[j] - e[j].mean(axis=0)
        total += float(np.sum(d**2))
    expected = math.sqrt(total / (t * p))
    r = score(truth, positions=true + offsets + e)
    assert r["position_error_rms_A"] == pytest.approx(expected, rel=1e-12)


# --- vibration ------------------------------------------------------------------------------


def md_snapshots(m: int = 8, seed: int = 6) -> np.ndarray:
    """``[M, N, 3]`` Å: 4 columns of 4 atoms (z = 0, 2, 4, 6 Å) at (1.5 | 4.5, 1.5 | 4.5) Å,
    each snapshot jittering each column (σ 5 pm) and each atom (σ 3 pm) laterally."""
    rng = np.random.default_rng(seed)
    cols = np.array([(1.5, 1.5), (1.5, 4.5), (4.5, 1.5), (4.5, 4.5)])
    snaps = np.zeros((m, 16, 3))
    for k in range(m):
        shift = rng.normal(0.0, 0.05, (4, 2))
        for c in range(4):
            for a in range(4):
                snaps[k, 4 * c + a, :2] = cols[c] + shift[c] + rng.normal(0.0, 0.03, 2)
                snaps[k, 4 * c + a, 2] = 2.0 * a
    return snaps


def render_states(snaps: np.ndarray, sigma: float, n_pixels: int = 60,
                  sampling: float = 0.1) -> np.ndarray:
    """Object states ``[K, 2, X, Y]``: state k holds a 2D Gaussian per atom of snapshot k (the
    first two atoms of a column in slice 0, the others in slice 1); pixel (i, j) at (i, j) p."""
    x = sampling * np.arange(n_pixels)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    states = np.zeros((snaps.shape[0], 2, n_pixels, n_pixels))
    for k, snap in enumerate(snaps):
        for n, (px, py, _) in enumerate(snap):
            states[k, (n % 4) // 2] += np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
    return states


@pytest.mark.parametrize("name", ["truth__snapshots", "truth__truth_snapshots"])
def test_vibration_states_that_follow_the_snapshots(name: str) -> None:
    snaps = md_snapshots()
    truth = make_truth(**{name: snaps})
    # Peaks narrow against column_radius (0.1 vs 0.5 Å), so the COM in the disc is unbiased.
    states = render_states(snaps, sigma=0.1)
    r = score(truth, object_states=torch.from_numpy(states), object_sampling=(0.1, 0.1))
    assert r["scorers"] == ["vibration"] and r["n_columns"] == 4
    centres = snaps[:, :, :2].reshape(len(snaps), 4, 4, 2).mean(axis=2)  # [M, C, 2]
    true_rms = np.sqrt(np.sum(np.std(centres, axis=0) ** 2, axis=-1)).mean() * 100
    assert r["true_vibration_rms_pm"] == pytest.approx(true_rms, rel=1e-12)
    assert 4.0 < true_rms < 12.0
    assert r["vibration_ratio"] == pytest.approx(1.0, abs=0.01)
    assert r["vibration_rms_pm"] == pytest.approx(true_rms, rel=0.01)

    same = np.repeat(states[:1], len(states), axis=0)  # all states identical: no spread
    r = score(truth, object_states=same, object_sampling=(0.1, 0.1))
    assert r["vibration_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert r["vibration_rms_pm"] == pytest.approx(0.0, abs=1e-9)
    assert r["true_vibration_rms_pm"] == pytest.approx(true_rms, rel=1e-12)


def test_vibration_reads_the_object_origin() -> None:
    snaps = md_snapshots()
    truth = make_truth(truth__snapshots=snaps)
    o = np.array([-0.7, 0.4])  # the same states, their pixel (0, 0) now at o (Å)
    states = render_states(snaps - np.array([*o, 0.0]), sigma=0.1)
    r = score(truth, object_states=states, object_sampling=(0.1, 0.1), object_origin=tuple(o))
    assert r["n_columns"] == 4
    assert r["vibration_ratio"] == pytest.approx(1.0, abs=0.01)


def test_vibration_leaves_out_a_column_outside_the_object_states() -> None:
    snaps = md_snapshots()
    extra = snaps[:, :4].copy()
    extra[:, :, 0] += 6.0  # a fifth column at x = 7.5 Å, beyond the states (x < 6 Å)
    truth = make_truth(truth__snapshots=np.concatenate([snaps, extra], axis=1))
    states = render_states(snaps, sigma=0.1)
    r = score(truth, object_states=states, object_sampling=(0.1, 0.1))
    assert r["n_columns"] == 4
    assert r["vibration_ratio"] == pytest.approx(1.0, abs=0.01)


# --- R-factor -------------------------------------------------------------------------------


def test_fit_r_factor_over_chunks_equals_the_metric_on_the_whole() -> None:
    rng = np.random.default_rng(7)
    obs = [rng.uniform(0.1, 2.0, (n, 8, 8)) for n in (4, 1, 3)]
    cal = [o * (1 + rng.normal(0.0, 0.1, o.shape)) for o in obs]
    pairs = [(torch.from_numpy(o), torch.from_numpy(c)) for o, c in zip(obs, cal, strict=True)]
    whole = metrics_r_factor(np.concatenate(obs), np.concatenate(cal))
    assert fit_r_factor(iter(pairs)) == pytest.approx(whole, rel=1e-12)
    ones = torch.ones(5, dtype=torch.float64)
    assert fit_r_factor([(ones, 1.1 * ones)]) == pytest.approx(0.1, rel=1e-12)
    assert math.isnan(fit_r_factor([]))
    r = score(make_truth(), r_factor=0.125)
    assert r["scorers"] == ["r_factor"] and r["r_factor"] == 0.125


# --- the registry ---------------------------------------------------------------------------


def test_only_scorers_with_their_estimate_and_truth_apply() -> None:
    truth = make_truth(geometry__positions=np.zeros((2, 3, 2)))
    r = score(truth, tilt=np.array([1.0, 2.0]), r_factor=0.2)  # no truth/truth_tilt_mrad
    assert r["status"] == "ok" and r["scorers"] == ["r_factor"]
    assert not any(k.startswith("tilt") for k in r)
    r = score(truth, tilt=np.array([1.0, 2.0]))
    assert r["scorers"] == [] and set(r) == {"status", "scorers", "score_keys"}


def test_non_finite_estimate_fails_and_names_it() -> None:
    truth = make_truth(truth__truth_tilt_mrad=np.zeros(2), geometry__euler_deg=np.zeros((2, 3)),
                       geometry__shifts=np.zeros((2, 2)))
    shifts = np.zeros((2, 2))
    shifts[1, 0] = np.nan
    r = score(truth, tilt=np.zeros(2), geometry=GeometryEstimate(np.zeros((2, 3)), shifts))
    assert r["status"] == "failed" and "geometry.shifts" in r["error"]
    assert "tilt" not in r["error"] and "tilt_error_mrad" not in r
    assert r["score_keys"] == ["status", "error"]
    r = score(truth, tilt=torch.tensor([0.0, float("inf")]))
    assert r["status"] == "failed" and "tilt" in r["error"]
    given = score_or_fail({"tilt": np.zeros(2)}, "diverged", truth, CFG)
    assert given == {"status": "failed", "error": "diverged", "score_keys": ["status", "error"]}


def test_score_keys_public_and_json() -> None:
    pos, z = lattice_atoms(jitter=0.2)
    vol = render_volume(pos, np.where(z == AU, 3.0, 1.0), sigma=0.4)
    truth = make_truth(truth__positions=pos, truth__numbers=z, truth__potential=vol,
                       truth__truth_tilt_mrad=np.zeros(2))
    r = score(truth, volume=vol, tilt=np.array([1.0, 0.0]), r_factor=0.3)
    assert r["scorers"] == ["traced_atoms", "fsc", "elongation", "r_factor", "tilt"]
    written = {"status", "scorers"}
    ests = Reconstruction(history=History(), volume=vol, tilt=np.array([1.0, 0.0]),
                          r_factor=0.3).estimates()
    for name in r["scorers"]:
        written |= set(SCORERS[name].score(ests, truth, CFG))
    assert set(r) - {"score_keys"} == written
    assert r["score_keys"] == sorted(written | {"error"})
    out = public(r)
    assert set(out) == {k for k in r if not k.startswith("_")}
    assert "_traced" in r and "_fsc" in r and "_traced" not in out and "_fsc" not in out
    json.dumps(out, allow_nan=False)  # valid JSON as it stands
    nan = float("nan")
    raw = {"a": nan, "b": np.float64(np.inf), "c": [1.0, nan], "d": {"e": -math.inf, "f": 2},
           "_g": np.zeros(3), "h": "ok"}
    assert public(raw) == {"a": None, "b": None, "c": [1.0, None], "d": {"e": None, "f": 2},
                           "h": "ok"}
    json.dumps(public(raw), allow_nan=False)


def test_table_columns_order() -> None:
    available = ["seconds_per_iteration", "recall_Cu", "unrelated", "vibration_ratio",
                 "recall_Au", "tilt_error_mrad", "tp", "rmsd_pm", "fsc_resolution_A", "status",
                 "position_error_rms_A", "shift_error_mean_A", "r_factor",
                 "tilt_map_error_max_mrad", "true_vibration_rms_pm"]
    assert table_columns(available) == [
        "status", "rmsd_pm", "tp", "recall_Au", "recall_Cu", "fsc_resolution_A", "r_factor",
        "tilt_error_mrad", "tilt_map_error_max_mrad", "shift_error_mean_A",
        "position_error_rms_A", "vibration_ratio", "true_vibration_rms_pm",
        "seconds_per_iteration"]
    assert table_columns(["tp", "recall_Au"]) == ["tp", "recall_Au"]  # absent ones left out
    assert table_columns([]) == []
    registry = list(dict.fromkeys(c for s in SCORERS.values() for c in s.columns if "*" not in c))
    assert table_columns([*reversed(registry), "status"]) == ["status", *registry]
