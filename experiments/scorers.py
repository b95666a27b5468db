"""The built-in scorers, one per estimate kind and truth (registered in :data:`SCORERS`).

| scorer | estimate | truth | headline columns |
|---|---|---|---|
| ``traced_atoms`` | ``volume`` | atoms | RMSD, tracing error, classification, recall |
| ``atoms`` | ``atoms`` | atoms | the same, matched directly (no tracing) |
| ``fsc`` | ``volume`` | ``truth/potential`` | FSC resolution (0.5 against the truth) |
| ``elongation`` | ``volume`` | atoms | FWHM of the heaviest atoms' peaks along z and x |
| ``r_factor`` | ``r_factor`` | none (the data) | R-factor of the fitted model (paper 004 eq. 11) |
| ``tilt`` | ``tilt`` | ``truth/truth_tilt_mrad`` | mistilt error (mrad) |
| ``tilt_map`` | ``tilt_map`` | ``truth/truth_tilt_at_positions`` | mean and max tilt-map error |
| ``geometry`` | ``geometry`` | true Euler angles and shifts | alignment errors after the gauge |
| ``positions`` | ``positions`` | true scan positions | RMS position error after the mean offset |
| ``vibration`` | ``object_states`` | MD snapshots | column spread across states vs snapshots |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from matplotlib.figure import Figure
from scipy import ndimage

from experiments.figures import save_figure
from experiments.scoring import Estimates, Scorer, ScoringConfig, Truth, register_scorer
from metrics import (
    alignment_errors,
    atom_columns,
    classify_species,
    column_com,
    columns_from_atoms,
    fourier_shell_correlation,
    integrated_intensity,
    matched_deviations,
    peak_elongation,
    score_atoms,
    tilt_error_mrad,
    trace_atoms,
    vibration_spread,
)
from metrics.figures import (
    plot_deviation_histogram,
    plot_fsc,
    plot_intensity_histogram,
    plot_slab_overlay,
    plot_tilt_map,
)

ATOMS_TRUTH = ("truth/positions", "truth/numbers")
ATOM_COLUMNS = ("rmsd_pm", "rmsd_offset_removed_pm", "tracing_error", "classification_rate",
                "tp", "fp", "fn", "recall_*")
ATOM_LABELS = {"rmsd_pm": "RMSD (pm)", "rmsd_offset_removed_pm": "RMSD, offset removed (pm)",
               "tracing_error": "tracing error", "classification_rate": "classification",
               "tp": "TP", "fp": "FP", "fn": "FN", "recall_*": "recall {}"}


def atom_scores(positions: np.ndarray, numbers: np.ndarray, truth: Truth,
                cfg: ScoringConfig) -> dict[str, Any]:
    """Match atoms ``positions [N, 3]`` Å of species ``numbers [N]`` (0 = not an atom) to the
    true atoms; headline scores, ``recall_<symbol>`` per true species, the full ``scores``
    and (for the figure, not stored) the matched pairs' deviations ``_deviations [K, 3]`` Å."""
    true_z, true_pos = truth.array("truth/numbers"), truth.array("truth/positions")
    scores = score_atoms(positions, true_pos, numbers, true_z, r_match=cfg.r_match).to_dict()
    out = {k: scores[k] for k in ("rmsd_pm", "rmsd_offset_removed_pm", "tracing_error",
                                  "classification_rate", "tp", "fp", "fn", "n_true")}
    for z in np.unique(true_z):
        out[f"recall_{chemical_symbols[int(z)]}"] = scores["per_species"][str(int(z))]["recall"]
    deviations = matched_deviations(positions, true_pos, numbers, r_match=cfg.r_match)
    return out | {"scores": scores, "_deviations": deviations}


def deviation_figure(out_dir: Path, est: Estimates, result: dict[str, Any], truth: Truth
                     ) -> None:
    """The matched atoms' deviations from the truth (paper 004 Fig. 4): ``deviations.png``."""
    if len(result["_deviations"]):
        save_figure(plot_deviation_histogram(result["_deviations"]), out_dir / "deviations.png")


def score_traced(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """Trace → classify → match a volume (paper 001, section II.E-F)."""
    vol, v = np.asarray(est["volume"], dtype=np.float64), truth.voxel_size
    smooth = ndimage.gaussian_filter(vol, cfg.sigma / v) if cfg.sigma > 0 else vol
    traced = trace_atoms(smooth, v, truth.origin, min_distance=cfg.min_distance,
                         threshold=cfg.threshold_fraction * float(smooth.max()))
    species = sorted(int(z) for z in np.unique(truth.array("truth/numbers")))
    labels, intensities = np.zeros(len(traced.positions), dtype=int), np.zeros(0)
    if len(traced.positions):
        intensities = integrated_intensity(smooth, traced.positions, v, truth.origin,
                                           radius=cfg.radius)
        classes = classify_species(intensities, len(species), method=cfg.method,  # type: ignore[arg-type]
                                   non_atom=cfg.non_atom, atomic_numbers=species)
        labels = np.asarray(classes.labels)
    out = atom_scores(traced.positions, labels, truth, cfg)
    return out | {"_traced": {"positions": np.asarray(traced.positions).reshape(-1, 3),
                              "labels": labels, "intensities": np.asarray(intensities)}}


def traced_figures(out_dir: Path, est: Estimates, result: dict[str, Any], truth: Truth) -> None:
    """Traced-peak intensity histogram by class and a slab with traced and true atoms."""
    traced, true_z = result["_traced"], truth.array("truth/numbers")
    names = {0: "non-atom"} | {int(z): chemical_symbols[int(z)] for z in np.unique(true_z)}
    if len(traced["intensities"]):
        save_figure(plot_intensity_histogram(traced["intensities"], traced["labels"], names),
                    out_dir / "histogram.png")
    save_figure(plot_slab_overlay(est["volume"], truth.voxel_size, truth.origin,
                                  traced["positions"], truth.array("truth/positions"),
                                  traced["labels"], true_z), out_dir / "slab.png")
    deviation_figure(out_dir, est, result, truth)


def score_atoms_directly(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """Atoms a method found itself, matched to the truth with no tracing step."""
    numbers = np.asarray(est["atoms.numbers"]).astype(int)
    return atom_scores(np.asarray(est["atoms.positions"]).reshape(-1, 3), numbers, truth, cfg)


def score_fsc(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    fsc = fourier_shell_correlation(est["volume"], truth.array("truth/potential"),
                                    truth.voxel_size)
    return {"fsc_resolution_A": float(fsc.resolution(0.5)), "_fsc": fsc}


def fsc_figure(out_dir: Path, est: Estimates, result: dict[str, Any], truth: Truth) -> None:
    save_figure(plot_fsc(result["_fsc"], ["against the true potential"], (0.5,)),
                out_dir / "fsc.png")


def score_r_factor(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    return {"r_factor": float(est["r_factor"])}


def score_tilt(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    err = tilt_error_mrad(est["tilt"], truth.array("truth/truth_tilt_mrad"))
    return {"tilt_error_mrad": float(err["magnitude_mrad"]),
            "tilt_mrad": np.asarray(est["tilt"], dtype=float).tolist()}


def score_tilt_map(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """The tilt map ``[sx, sy, 2]`` against the true tilt at the scan positions of tilt 0,
    over the positions where the truth is defined (not vacuum): mean, max and RMS of the
    error's magnitude, and the RMS error of the profile along x (the map averaged over y,
    paper 002 Fig. 7D)."""
    tilt_map = np.asarray(est["tilt_map"], dtype=float)
    true = truth.array("truth/truth_tilt_at_positions")[0].reshape(tilt_map.shape)
    mag = tilt_error_mrad(tilt_map, true)["magnitude_mrad"]
    ok = np.isfinite(mag)
    if not ok.any():
        return {}
    rows = np.all(np.isfinite(true), axis=(1, 2))
    profile = tilt_map[rows].mean(axis=1) - true[rows].mean(axis=1)  # [rows, 2]
    return {"tilt_map_error_mean_mrad": float(mag[ok].mean()),
            "tilt_map_error_max_mrad": float(mag[ok].max()),
            "tilt_map_error_rms_mrad": float(np.sqrt(np.mean(mag[ok] ** 2))),
            "tilt_profile_error_rms_mrad": float(np.sqrt(np.mean(np.sum(profile**2, -1))))
            if rows.any() else float("nan")}


def tilt_map_figure(out_dir: Path, est: Estimates, result: dict[str, Any], truth: Truth) -> None:
    """The recovered tilt map beside the true one, and their profiles (paper 002 Figs 6-7)."""
    tilt = np.asarray(est["tilt_map"], dtype=float)
    true = truth.array("truth/truth_tilt_at_positions")[0].reshape(tilt.shape)
    component = int(np.nanargmax(np.nanstd(true, axis=(0, 1))))  # the axis that varies
    pos = np.asarray(est["positions"], dtype=float).reshape(-1, 2) if "positions" in est else None
    step = float(np.ptp(pos[:, 0]) / max(tilt.shape[0] - 1, 1)) if pos is not None else None
    save_figure(plot_tilt_map(tilt, true, component, step), out_dir / "tilt_map.png")


def score_elongation(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """Missing-wedge elongation (paper 000 Fig. 2d): the peaks at the heaviest species' true
    atoms, FWHM along the beam (z) against x, and their ratio."""
    numbers = truth.array("truth/numbers")
    heavy = truth.array("truth/positions")[numbers == numbers.max()]
    return peak_elongation(est["volume"], truth.voxel_size, truth.origin, heavy)


def depth_section_figure(out_dir: Path, est: Estimates, result: dict[str, Any],
                         truth: Truth) -> None:
    save_figure(depth_section(est, result, truth), out_dir / "depth_section.png")


def depth_section(est: Estimates, result: dict[str, Any], truth: Truth) -> Figure:
    """An x-z section (2 Å thick in y, through the cell centre) with the true atoms, and the
    traced ones where the volume was traced (else every true atom in it reads as missing)."""
    vol = np.asarray(est["volume"], float).transpose(2, 1, 0)  # [y, x, z]: y is the slab axis
    o = np.asarray(truth.origin, float)
    true = truth.array("truth/positions")[:, [0, 2, 1]]
    traced = result.get("_traced")
    found, labels = (np.zeros((0, 3)), None) if traced is None else (
        np.asarray(traced["positions"], float).reshape(-1, 3)[:, [0, 2, 1]], traced["labels"])
    fig = plot_slab_overlay(vol, truth.voxel_size, o[[0, 2, 1]], found, true, labels,
                            truth.array("truth/numbers"))
    fig.axes[0].set_ylabel("z (Å), along the beam")
    fig.axes[0].set_title("x-z section (2 Å in y)")
    return fig


def score_geometry(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    err = alignment_errors(est["geometry.shifts"], est["geometry.euler_deg"],
                           truth.array("geometry/shifts"), truth.array("geometry/euler_deg"))
    keys = ("shift_error_mean_A", "shift_error_max_A", "rotation_error_mean_deg",
            "rotation_error_max_deg")
    return {k: err[k] for k in keys} | {
        "shift_error_median_A": float(np.median(err["shift_error_A"])),
        "gauge_shift_A": err["gauge_shift_A"].tolist()}


def score_positions(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """RMS error of refined scan positions ``[T, P, 2]`` after removing each tilt's mean
    offset (a common scan shift is the gauge of the per-tilt image shifts)."""
    d = np.asarray(est["positions"], float) - truth.array("geometry/positions")
    d = d - d.mean(axis=-2, keepdims=True)
    return {"position_error_rms_A": float(np.sqrt(np.mean(np.sum(d**2, axis=-1))))}


def score_vibration(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """Spread of each atomic column's centre of mass across the object states (their
    projected potential) against the spread of the true column across the MD snapshots
    (paper 003, Fig. 9). Columns are the atoms' mean (x, y) grouped within ``column_radius``."""
    snaps = truth.array("truth/snapshots|truth/truth_snapshots")
    columns = atom_columns(snaps.mean(axis=0), cfg.column_radius)
    phases = np.asarray(est["object_states"], float).sum(axis=1)  # [K, X, Y] V Å
    sampling = np.asarray(est["object_sampling"], float)
    com = column_com(phases, columns, float(sampling[0]), est["object_origin"],
                     radius=cfg.column_radius)  # [K, C, 2]
    true = columns_from_atoms(snaps, columns, cfg.column_radius)  # [M, C, 2]
    # columns outside the object states' field of view (or with no atoms) are left out
    keep = np.all(np.isfinite(com), axis=(0, 2)) & np.all(np.isfinite(true), axis=(0, 2))
    if not keep.any():
        nan = float("nan")
        return {"vibration_rms_pm": nan, "true_vibration_rms_pm": nan, "vibration_ratio": nan,
                "n_columns": 0}
    spread = vibration_spread(com[:, keep], true[:, keep])
    ok = np.isfinite(spread["ratio"])
    return {"vibration_rms_pm": float(np.mean(spread["rms_A"][ok]) * 100),
            "true_vibration_rms_pm": float(np.mean(spread["true_rms_A"][ok]) * 100),
            "vibration_ratio": float(np.median(spread["ratio"][ok])), "n_columns": int(ok.sum())}


for _scorer in (
    Scorer("traced_atoms", "volume", ATOMS_TRUTH, score_traced, ATOM_COLUMNS, traced_figures,
           ATOM_LABELS, rank_by="rmsd_pm"),
    Scorer("atoms", "atoms", ATOMS_TRUTH, score_atoms_directly, ATOM_COLUMNS, deviation_figure,
           ATOM_LABELS, rank_by="rmsd_pm"),
    Scorer("fsc", "volume", ("truth/potential",), score_fsc, ("fsc_resolution_A",), fsc_figure,
           {"fsc_resolution_A": "FSC 0.5 (Å)"}),
    Scorer("elongation", "volume", ATOMS_TRUTH, score_elongation,
           ("elongation", "fwhm_z_A", "fwhm_x_A"), depth_section_figure,
           {"elongation": "FWHM z / x", "fwhm_z_A": "FWHM z (Å)", "fwhm_x_A": "FWHM x (Å)"}),
    Scorer("r_factor", "r_factor", (), score_r_factor, ("r_factor",), None,
           {"r_factor": "R-factor"}),
    Scorer("tilt", "tilt", ("truth/truth_tilt_mrad",), score_tilt, ("tilt_error_mrad",), None,
           {"tilt_error_mrad": "tilt error (mrad)"}),
    Scorer("tilt_map", "tilt_map", ("truth/truth_tilt_at_positions",), score_tilt_map,
           ("tilt_map_error_mean_mrad", "tilt_map_error_max_mrad",
            "tilt_profile_error_rms_mrad"), tilt_map_figure,
           {"tilt_map_error_mean_mrad": "tilt map error (mrad)",
            "tilt_map_error_max_mrad": "tilt map max error (mrad)",
            "tilt_profile_error_rms_mrad": "tilt profile RMS error (mrad)"}),
    Scorer("geometry", "geometry", ("geometry/euler_deg", "geometry/shifts"), score_geometry,
           ("shift_error_mean_A", "shift_error_median_A", "rotation_error_mean_deg"), None,
           {"shift_error_mean_A": "shift error (Å)",
            "shift_error_median_A": "median shift error (Å)",
            "rotation_error_mean_deg": "rotation error (°)"}),
    Scorer("positions", "positions", ("geometry/positions",), score_positions,
           ("position_error_rms_A",), None, {"position_error_rms_A": "position error (Å)"}),
    Scorer("vibration", "object_states", ("truth/snapshots|truth/truth_snapshots",),
           score_vibration, ("vibration_ratio", "vibration_rms_pm", "true_vibration_rms_pm"), None,
           {"vibration_ratio": "vibration ratio", "vibration_rms_pm": "vibration (pm)",
            "true_vibration_rms_pm": "true vibration (pm)"}),
):
    register_scorer(_scorer)

from experiments import scorers_ptycho as _ptycho  # noqa: E402,F401  (registers them)
