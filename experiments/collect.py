"""Collect a Hydra multirun into one results table (CSV and markdown).

Every job directory holds ``metrics.json`` (written by the job) and ``.hydra/overrides.yaml``
(written by Hydra). One row per job: every override as a column (the swept parameters), then
the flattened metrics. Works during a multirun (the Hydra callback) and after the fact::

    ptychobench-collect multirun/2026-11-22/10-00-00
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.scoring import column_label, ranking_column, table_columns
from simulate.fileio import atomic_write

HIDDEN = ("job", "progress")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def _overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(item.lstrip("+~").split("=", 1) for item in items if "=" in item)


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job under ``sweep_dir`` that has a ``metrics.json``."""
    rows = []
    for path in sorted(Path(sweep_dir).rglob("metrics.json")):
        record = json.loads(path.read_text())
        row = {"job": str(path.parent.relative_to(sweep_dir))} | _overrides(path.parent)
        rows.append(row | {"params": list(_overrides(path.parent))} | _flatten(record))
    df = pd.DataFrame(rows)
    if not df.empty:
        swept = sorted({p for ps in df.pop("params") for p in ps})
        df.attrs["swept"] = swept
        front = ["job", *swept]
        df = df[front + [c for c in df.columns if c not in front]]
    return df


def _cell(v: Any, width: int = 60) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}"
    text = str(v).replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def to_markdown(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub markdown table of ``columns`` (default: the swept parameters, then the headline
    columns of every scorer that scored some job, :func:`experiments.scoring.table_columns`,
    e.g. RMSD, ``recall_<symbol>`` per species, tilt or alignment errors)."""
    swept = [c for c in df.attrs.get("swept", []) if c not in HIDDEN]
    cols = columns or swept + table_columns(df.columns)
    heads = [column_label(c) for c in cols]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    ranking = ranking_lines(df, swept)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(ranking) + "\n" if ranking else "")


def ranking_lines(df: pd.DataFrame, swept: list[str]) -> list[str]:
    """One line per setting of the other swept parameters: the algorithms ordered by the
    scorers' ranking column (:func:`experiments.scoring.ranking_column`), e.g.
    ``RMSD (pm): mset 9.4 < sset 10.4 < resire 25.1``, when the algorithm is swept."""
    by = ranking_column(df.columns)
    if "algorithm" not in swept or by is None:
        return []
    ok = df[df["status"] == "ok"] if "status" in df else df
    others = [c for c in swept if c != "algorithm"]
    groups = ok.groupby(others, dropna=False) if others else [((), ok)]
    out = []
    for key, group in groups:
        ranked = group.dropna(subset=[by]).sort_values(by)
        if len(ranked) < 2:
            continue
        where = ", ".join(f"{c}={v}" for c, v in zip(others, np.atleast_1d(key), strict=False))
        text = " < ".join(f"{a} {_cell(v)}" for a, v in zip(ranked["algorithm"], ranked[by],
                                                           strict=True))
        out.append(f"{column_label(by)}: {text}" + (f" ({where})" if where else ""))
    return out


def summary_line(df: pd.DataFrame) -> int:
    """Print ``N jobs: n ok, m failed`` (naming the failed ones); returns the number failed."""
    status = df["status"] if "status" in df else pd.Series("ok", index=df.index)
    bad = df[status != "ok"]
    names = ", ".join(str(j) for j in bad["job"]) if "job" in bad else ""
    print(f"{len(df)} jobs: {len(df) - len(bad)} ok, {len(bad)} failed" +
          (f" ({names})" if len(bad) else ""))
    return len(bad)


def write_tables(df: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    csv = atomic_write(out / "results.csv", lambda p: df.to_csv(p, index=False))
    md = atomic_write(out / "results.md", lambda p: p.write_text(to_markdown(df)))
    return csv, md


class CollectResults(Callback):
    """Hydra callback: at the end of a multirun, write and print the results table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write and print the table, say how many jobs failed, and exit non-zero if any did."""
        sweep_dir = Path(config.hydra.sweep.dir)
        df = collect(sweep_dir)
        if df.empty:
            print(f"no results under {sweep_dir}")
            return
        csv, _ = write_tables(df, sweep_dir)
        print(to_markdown(df))
        print(f"results: {csv}")
        failed = summary_line(df)
        if failed:
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    """``ptychobench-collect SWEEP_DIR``: (re)build the table of an existing multirun."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args(argv)
    df = collect(args.sweep_dir)
    if df.empty:
        raise SystemExit(f"no metrics.json under {args.sweep_dir}")
    csv, md = write_tables(df, args.sweep_dir)
    print(md.read_text())
    print(f"results: {csv}")


if __name__ == "__main__":
    main()
