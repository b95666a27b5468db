"""Paper 001 Fig. 9-style summary: RMSD, tracing error and classification versus a swept
parameter, one line per algorithm::

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
from matplotlib.figure import Figure  # noqa: E402

AXIS_LABELS = {"noise.dose": "dose (e/Å², whole series)", "scan.step": "probe step (Å)",
               "tilts": "tilt range", "microscope": "microscope", "sample": "sample"}
PANELS = (("rmsd_pm", "RMSD (pm)", 1.0), ("tracing_error", "tracing error (%)", 100.0),
          ("classification_rate", "classification (%)", 100.0))


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace({"inf": np.inf}), errors="coerce")


def summary_figure(df: pd.DataFrame, x: str, hue: str = "algorithm") -> Figure:
    """Three panels against ``x``; failed jobs are left out (they are never scored)."""
    ok = df[df.get("status", "ok") == "ok"].copy() if "status" in df else df.copy()
    xs = _numeric(ok[x])
    categorical = xs.isna().any()
    finite = xs[np.isfinite(xs)]
    infinite = not categorical and np.isinf(xs).any() and len(finite) > 0
    if infinite:  # e.g. noise.dose = inf: drawn one decade past the largest finite value
        xs = xs.where(np.isfinite(xs), 10 * finite.max())
    ok["_x"] = ok[x].astype(str) if categorical else xs
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    groups = ok.groupby(ok[hue] if hue in ok else pd.Series("all", index=ok.index))
    for name, group in groups:
        group = group.sort_values("_x")
        for ax, (col, label, scale) in zip(axes, PANELS, strict=True):
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
    """``ptychobench-figure RESULTS.csv --x PARAM [--hue algorithm] [--out fig.png]``."""
    from experiments.figures import save_figure

    ap = argparse.ArgumentParser(description="Fig. 9-style summary of a results table")
    ap.add_argument("results", type=Path)
    ap.add_argument("--x", required=True, help="the swept column, e.g. noise.dose")
    ap.add_argument("--hue", default="algorithm")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    df = pd.read_csv(args.results)
    for col in (args.x,):
        if col not in df:
            raise SystemExit(f"--x {col!r} is not a column of {args.results}: {list(df.columns)}")
    out = args.out or args.results.with_name("summary.png")
    save_figure(summary_figure(df, args.x, args.hue), out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
