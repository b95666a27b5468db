"""Figures of the experiments layer (matplotlib, Agg): the dataset overview, the loss curve, and
the paper 001 Fig. 9-style summary of a results table (the ``ptychobench-figure`` script)::

    ptychobench-figure multirun/.../results.csv --x noise.dose --out fig9.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ase.data import chemical_symbols  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulate.fileio import atomic_write  # noqa: E402
from simulate.store import Dataset  # noqa: E402


def _model_panel(ax: plt.Axes, pos: np.ndarray, numbers: np.ndarray, axes: tuple[int, int]) -> None:
    names = "xyz"
    for z in np.unique(numbers):
        sel = numbers == z
        ax.scatter(
            pos[sel, axes[0]],
            pos[sel, axes[1]],
            s=4 + z / 4,
            alpha=0.7,
            label=f"{chemical_symbols[z]} ({sel.sum()})",
        )
    ax.set_xlabel(f"{names[axes[0]]} (Å)")
    ax.set_ylabel(f"{names[axes[1]]} (Å)")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")


def dataset_overview(ds: Dataset, patterns: np.ndarray | None, n_patterns: int = 4) -> Figure:
    """Model projections, the HAADF image at the first tilt, and diffraction patterns (log).

    ``patterns`` is the (possibly noisy) ``[T, sx, sy, kx, ky]`` series shown for tilt 0,
    or None for an HAADF-only series (the bottom row then shows the first HAADF tilts).
    """
    pos, numbers = ds.array("truth/positions"), ds.array("truth/numbers")
    fig, axs = plt.subplots(2, max(3, n_patterns), figsize=(3.2 * max(3, n_patterns), 6.4))
    _model_panel(axs[0, 0], pos, numbers, (0, 1))
    _model_panel(axs[0, 1], pos, numbers, (0, 2))
    axs[0, 0].set_title("model, top view")
    axs[0, 1].set_title("model, side view")
    if ds.has_haadf:
        axs[0, 2].imshow(ds.array("measurements/haadf")[0].T, origin="lower", cmap="gray")
        axs[0, 2].set_title(f"ADF, tilt θ = {ds.array('geometry/euler_deg')[0, 1]:.1f}°")
    for ax in axs[0, 3:]:
        ax.axis("off")
    if patterns is None:
        _haadf_row(axs[1], ds)
        fig.tight_layout()
        return fig
    sx, sy = patterns.shape[1:3]
    picks = np.linspace(0, sx * sy - 1, n_patterns).astype(int)
    kmax = np.asarray(ds.meta["angular_sampling_mrad"]) * np.asarray(patterns.shape[-2:]) / 2
    for ax, p in zip(axs[1], picks, strict=False):
        i, j = divmod(int(p), sy)
        img = np.log10(np.clip(patterns[0, i, j], 1e-12, None))
        ax.imshow(
            img.T,
            origin="lower",
            cmap="magma",
            vmin=img.max() - 5,
            vmax=img.max(),
            extent=[-kmax[0], kmax[0], -kmax[1], kmax[1]],
        )
        ax.set_title(f"scan ({i}, {j})", fontsize=9)
        ax.set_xlabel("kx (mrad)")
    axs[1, 0].set_ylabel("ky (mrad)")
    fig.tight_layout()
    return fig


def _haadf_row(axs: np.ndarray, ds: Dataset) -> None:
    """The first HAADF tilt images, one per axis (for series without diffraction)."""
    haadf, euler = ds.array("measurements/haadf"), ds.array("geometry/euler_deg")
    for t, ax in enumerate(axs):
        if t >= len(haadf):
            ax.axis("off")
            continue
        ax.imshow(haadf[t].T, origin="lower", cmap="gray")
        ax.set_title(f"HAADF, θ = {euler[t, 1]:.1f}°", fontsize=9)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save atomically and close."""
    out = atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=Path(path).suffix[1:]))
    plt.close(fig)
    return out


def loss_figure(loss: list[float]) -> Figure:
    """The loss history (log scale), as in paper 001 Fig. 2d."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    if loss:
        ax.semilogy(np.arange(1, len(loss) + 1), loss, "o-", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

AXIS_LABELS = {"noise.dose": "dose (e/Å², whole series)", "scan.step": "probe step (Å)",
               "tilts": "tilt range", "microscope": "microscope", "sample": "sample",
               "sample.tilt_x": "mistilt θx (mrad)", "algorithm.n_slices": "number of slices"}
PANELS = (("rmsd_pm", "RMSD (pm)", 1.0), ("tracing_error", "tracing error (%)", 100.0),
          ("classification_rate", "classification (%)", 100.0))


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace({"inf": np.inf}), errors="coerce")


def summary_figure(df: pd.DataFrame, x: str, hue: str = "algorithm",
                   panels: tuple[tuple[str, str, float], ...] = PANELS) -> Figure:
    """One panel per ``(column, label, scale)`` of ``panels`` (default paper 001's RMSD,
    tracing error and classification) against ``x``; failed jobs are left out (they are never
    scored)."""
    ok = df[df.get("status", "ok") == "ok"].copy() if "status" in df else df.copy()
    xs = _numeric(ok[x])
    categorical = xs.isna().any()
    finite = xs[np.isfinite(xs)]
    infinite = not categorical and np.isinf(xs).any() and len(finite) > 0
    if infinite:  # e.g. noise.dose = inf: drawn one decade past the largest finite value
        xs = xs.where(np.isfinite(xs), 10 * finite.max())
    ok["_x"] = ok[x].astype(str) if categorical else xs
    fig, axes = plt.subplots(1, len(panels), figsize=(3.7 * len(panels), 3.3), squeeze=False)
    axes = axes[0]
    groups = ok.groupby(ok[hue] if hue in ok else pd.Series("all", index=ok.index))
    for name, group in groups:
        group = group.sort_values("_x")
        for ax, (col, label, scale) in zip(axes, panels, strict=True):
            ax.plot(group["_x"], _numeric(group[col]) * scale, "o-", label=str(name))
            ax.set_ylabel(label)
            ax.set_xlabel(AXIS_LABELS.get(x, x))
    log = not categorical and (xs > 0).all() and xs.max() / max(xs.min(), 1e-300) >= 10
    if log or infinite:  # ticks at the swept values only (log minor labels would overlap)
        ticks = sorted(set(xs))
        labels = [f"{t:.0e}" for t in ticks]
        if infinite:
            labels[-1] = "∞"
        for ax in axes:
            if log:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(ticks, labels, rotation=30)
    axes[0].legend(frameon=False)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    """``ptychobench-figure RESULTS.csv --x PARAM [--y COLUMN ...] [--hue algorithm]
    [--out fig.png]``."""
    ap = argparse.ArgumentParser(description="Fig. 9-style summary of a results table")
    ap.add_argument("results", type=Path)
    ap.add_argument("--x", required=True, help="the swept column, e.g. noise.dose")
    ap.add_argument("--y", nargs="+", default=None,
                    help="metric columns, one panel each (default: RMSD, tracing error, "
                    "classification), e.g. d_sr_tio_pm d_o_tio_pm tilt_error_mrad")
    ap.add_argument("--hue", default="algorithm")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    df = pd.read_csv(args.results)
    for flag, col in [("--x", args.x)] + [("--y", c) for c in args.y or []]:
        if col not in df:
            raise SystemExit(f"{flag} {col!r} is not a column of {args.results}: "
                             f"{list(df.columns)}")
    from experiments.scoring import column_label  # (scoring's scorers import this module)

    panels = PANELS if not args.y else tuple((c, column_label(c), 1.0) for c in args.y)
    out = args.out or args.results.with_name("summary.png")
    save_figure(summary_figure(df, args.x, args.hue, panels), out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
