"""Paper-style figures of the metrics (matplotlib, no pyplot state, Agg-safe).

Each function returns a :class:`matplotlib.figure.Figure` and saves it to ``path`` if given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from metrics.grid import ArrayLike, check_grid, check_points, check_positive
from metrics.matching import PM_PER_A, match_status
from metrics.resolution import FourierCorrelation

PathLike = str | Path | None
CLASS_COLOURS = ["0.6", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def _finish(fig: Figure, path: PathLike) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def plot_intensity_histogram(
    intensities: ArrayLike,
    labels: ArrayLike,
    class_names: Mapping[int, str] | None = None,
    bins: int = 60,
    path: PathLike = None,
) -> Figure:
    """Histogram of integrated intensities coloured by class (paper 001 Fig. 3, top row).

    Args:
        intensities: ``[N]`` integrated intensities. labels: ``[N]`` int class labels
            (0 = non-atom). class_names: optional label -> name (e.g. {0: "non-atom", 29: "Cu"}).
    """
    x = np.asarray(intensities, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape != x.shape:
        raise ValueError(f"labels must have shape {x.shape}, got {lab.shape}")
    classes = np.unique(lab)
    edges = np.histogram_bin_edges(x, bins=bins) if len(x) else np.linspace(0, 1, bins + 1)
    fig = Figure(figsize=(4.0, 2.6))
    ax = fig.add_subplot()
    names = dict(class_names or {})
    names.setdefault(0, "non-atom")
    data = [x[lab == c] for c in classes]
    species = [c for c in classes if c != 0]
    colours = [CLASS_COLOURS[0] if c == 0 else
               CLASS_COLOURS[1 + species.index(c) % (len(CLASS_COLOURS) - 1)] for c in classes]
    ax.hist(data, bins=edges, stacked=True, color=colours,
            label=[names.get(int(c), str(int(c))) for c in classes])
    ax.set_xlabel("integrated intensity")
    ax.set_ylabel("number of atoms")
    ax.legend(frameon=False, fontsize=8)
    return _finish(fig, path)


def plot_deviation_histogram(
    deviations: ArrayLike,
    bins: int = 40,
    path: PathLike = None,
) -> Figure:
    """Distribution of the matched atoms' positional deviations (paper 004 Fig. 4).

    Args:
        deviations: ``[K, 3]`` traced minus true positions (x, y, z) in Å
            (:func:`metrics.matching.matched_deviations`).

    Left: the 3D distance |Δr| in pm, titled with the RMSD. Right: the components Δx, Δy, Δz
    in pm (the missing wedge shows as a wider Δz).
    """
    d = check_points("deviations", deviations) * PM_PER_A
    if d.shape[1] != 3:
        raise ValueError(f"deviations must be [K, 3], got {d.shape}")
    fig = Figure(figsize=(7.0, 2.8))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    dist = np.linalg.norm(d, axis=1)
    rmsd = float(np.sqrt(np.mean(dist**2))) if len(d) else float("nan")
    left.hist(dist, bins=bins, color="tab:blue")
    left.set_xlabel("|Δr| (pm)")
    left.set_ylabel("number of atoms")
    left.set_title(f"{len(d)} matched atoms, RMSD {rmsd:.1f} pm", fontsize=9)
    edges = np.histogram_bin_edges(d, bins=bins) if len(d) else np.linspace(-1, 1, bins + 1)
    for k, (name, colour) in enumerate(zip("xyz", ("tab:blue", "tab:orange", "tab:green"),
                                           strict=True)):
        rms = float(np.sqrt(np.mean(d[:, k] ** 2))) if len(d) else float("nan")
        right.hist(d[:, k], bins=edges, histtype="step", color=colour,
                   label=f"Δ{name} (rms {rms:.1f} pm)")
    right.set_xlabel("deviation (pm)")
    right.legend(frameon=False, fontsize=8)
    return _finish(fig, path)


def plot_slab_overlay(
    volume: np.ndarray,
    voxel_size: float,
    origin: ArrayLike,
    traced_positions: ArrayLike,
    true_positions: ArrayLike,
    traced_labels: ArrayLike | None = None,
    true_labels: ArrayLike | None = None,
    *,
    z_center: float | None = None,
    thickness: float = 2.0,
    r_match: float = 1.0,
    path: PathLike = None,
) -> Figure:
    """Central slab of a volume with true / false / missing atoms (paper 001 Fig. 3, bottom).

    The slab sums the voxels with z within ``thickness / 2`` Å of ``z_center`` (default: the
    volume centre). Atoms with z inside the slab are drawn: "true" = matched with the correct
    species, "false" = unmatched or wrong species, "missing" = true atom not traced (or traced
    as a non-atom). Axes are x (horizontal) and y (vertical) in Å.
    """
    vol = check_grid("volume", volume, 3)
    v = check_positive("voxel_size", voxel_size)
    o = np.asarray(origin, dtype=np.float64)
    thickness = check_positive("thickness", thickness)
    tr = check_points("traced_positions", traced_positions, 3)
    gt = check_points("true_positions", true_positions, 3)
    zs = o[2] + v * np.arange(vol.shape[0])
    zc = float(zs.mean()) if z_center is None else float(z_center)
    sel = np.abs(zs - zc) <= thickness / 2 + 1e-9
    if not np.any(sel):
        raise ValueError(f"z_center={zc} Å with thickness={thickness} Å selects no slice of the "
                         f"volume (z from {zs[0]} to {zs[-1]} Å)")
    slab = vol[sel].sum(axis=0)
    t_status, g_status = match_status(tr, gt, traced_labels, true_labels, r_match=r_match)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    extent = (o[0] - v / 2, o[0] + v * (vol.shape[1] - 0.5),
              o[1] - v / 2, o[1] + v * (vol.shape[2] - 0.5))
    ax.imshow(slab.T, origin="lower", extent=extent, cmap="gray", interpolation="nearest")
    in_t = np.abs(tr[:, 2] - zc) <= thickness / 2
    in_g = np.abs(gt[:, 2] - zc) <= thickness / 2
    styles = (("true", tr, in_t & (t_status == "true"), "o", "lime"),
              ("false", tr, in_t & (t_status == "false"), "x", "red"),
              ("missing", gt, in_g & (g_status == "missing"), "s", "yellow"))
    for name, pts, mask, marker, colour in styles:
        paint = {"c": colour} if marker == "x" else {"facecolors": "none", "edgecolors": colour}
        ax.scatter(pts[mask, 0], pts[mask, 1], s=18, marker=marker, linewidths=1.0,
                   label=f"{name} ({int(mask.sum())})", **paint)
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(f"slab z = {zc:.1f} ± {thickness / 2:.1f} Å", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=3)
    return _finish(fig, path)


def plot_fsc(
    curves: FourierCorrelation | Sequence[FourierCorrelation],
    labels: Sequence[str] | None = None,
    thresholds: Sequence[str | float] = ("half_bit", "one_bit", 0.5),
    path: PathLike = None,
) -> Figure:
    """FSC / FRC curves against spatial frequency (1/Å) with threshold curves (paper 000
    Fig. 3d). The threshold curves are those of the first curve's shells; each curve's legend
    gives its resolution (Å) at the first crossing of ``thresholds[0]`` (CONVENTIONS.md: 0.5
    against the true potential, half-bit between half-sets)."""
    cs = [curves] if isinstance(curves, FourierCorrelation) else list(curves)
    if not cs:
        raise ValueError("curves must hold at least one FourierCorrelation, got none")
    if not thresholds:
        raise ValueError("thresholds must name at least one threshold, got none")
    lead = thresholds[0]
    lead_name = lead.replace("_", "-") if isinstance(lead, str) else f"{lead:g}"
    names = list(labels) if labels is not None else [f"curve {i}" for i in range(len(cs))]
    fig = Figure(figsize=(4.4, 3.0))
    ax = fig.add_subplot()
    for c, name in zip(cs, names, strict=True):
        ax.plot(c.frequency[1:], c.correlation[1:], lw=1.5,
                label=f"{name} ({c.resolution(lead):.2f} Å at {lead_name})")
    ref = cs[0]
    for thr, style in zip(thresholds, ("--", ":", "-."), strict=False):
        y = ref._threshold(thr)
        name = thr.replace("_", "-") if isinstance(thr, str) else f"{thr:g}"
        ax.plot(ref.frequency[1:], y[1:], "k" + style, lw=0.8, label=name)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("correlation")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(frameon=False, fontsize=7)
    return _finish(fig, path)


def plot_column_scatter(
    com: ArrayLike,
    true_positions: ArrayLike | None = None,
    columns: Sequence[int] | None = None,
    path: PathLike = None,
) -> Figure:
    """Column positions across object states vs MD snapshots (paper 003 Fig. 9).

    One panel per column (default the first 9): reconstructed COMs (blue) and true positions
    (magenta) relative to the column's mean true position (or mean COM), in pm, with mean ± std
    error bars (red: reconstructed, dark blue: true).

    Args:
        com: ``[S, C, 2]`` COMs (x, y) in Å. true_positions: ``[T, C, 2]`` in Å.
    """
    c = np.asarray(com, dtype=np.float64)
    if c.ndim != 3 or c.shape[-1] != 2:
        raise ValueError(f"com must have shape [S, C, 2], got {c.shape}")
    t = None if true_positions is None else np.asarray(true_positions, dtype=np.float64)
    if t is not None and (t.ndim != 3 or t.shape[1:] != c.shape[1:]):
        raise ValueError(f"true_positions must have shape [T, {c.shape[1]}, 2], got {t.shape}")
    cols = list(columns) if columns is not None else list(range(min(9, c.shape[1])))
    n = len(cols)
    ncol = int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(2.3 * ncol, 2.2 * nrow))
    for k, col in enumerate(cols):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        ref = np.nanmean((t if t is not None else c)[:, col], axis=0)
        sets = [(c[:, col], "tab:blue", "red")]
        if t is not None:
            sets.append((t[:, col], "magenta", "darkblue"))
        for pts, colour, bar in sets:
            d = (pts - ref) * PM_PER_A
            ax.scatter(d[:, 0], d[:, 1], s=8, color=colour)
            m, s = np.nanmean(d, axis=0), np.nanstd(d, axis=0)
            ax.errorbar(m[0], m[1], xerr=s[0], yerr=s[1], color=bar, capsize=2, lw=1)
        ax.set_title(f"column {col}", fontsize=8)
        ax.set_xlabel("x (pm)", fontsize=7)
        ax.set_ylabel("y (pm)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_aspect("equal", adjustable="datalim")
    return _finish(fig, path)



def plot_tilt_map(
    tilt_map: ArrayLike,
    true_map: ArrayLike | None = None,
    component: int = 0,
    step: float | None = None,
    path: PathLike = None,
) -> Figure:
    """A recovered tilt map and its profile (paper 002 Figs 6D, 7C-D).

    Panels: the recovered ``component`` (0: θx, 1: θy) in mrad over the scan, the true map if
    given, and the profile averaged along the scan's y axis against x (recovered and true).

    Args:
        tilt_map: ``[sx, sy, 2]`` mrad. true_map: same shape, NaN where undefined (vacuum).
        step: scan step in Å (the profile's x axis; None: the scan row index).
    """
    tilt = np.asarray(tilt_map, dtype=np.float64)
    if tilt.ndim != 3 or tilt.shape[-1] != 2:
        raise ValueError(f"tilt_map must have shape [sx, sy, 2], got {tilt.shape}")
    true = None if true_map is None else np.asarray(true_map, dtype=np.float64)
    maps = [("recovered", tilt)] + ([("true", true)] if true is not None else [])
    fig = Figure(figsize=(3.2 * (len(maps) + 1), 2.8))
    finite = np.concatenate([m[..., component][np.isfinite(m[..., component])] for _, m in maps])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    name = "θx" if component == 0 else "θy"
    for k, (label, m) in enumerate(maps):
        ax = fig.add_subplot(1, len(maps) + 1, k + 1)
        im = ax.imshow(m[..., component].T, origin="lower", cmap="coolwarm", vmin=lo, vmax=hi)
        ax.set_title(f"{label} {name} (mrad)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = fig.add_subplot(1, len(maps) + 1, len(maps) + 1)
    x = np.arange(tilt.shape[0]) * (step or 1.0)
    for (label, m), style in zip(maps, ("o-", "k--"), strict=False):
        with np.errstate(invalid="ignore"):
            ax.plot(x, np.nanmean(m[..., component], axis=1), style, ms=3, label=label)
    ax.set_xlabel("x (Å)" if step else "scan row along x")
    ax.set_ylabel(f"{name} (mrad)")
    ax.legend(frameon=False, fontsize=7)
    return _finish(fig, path)
