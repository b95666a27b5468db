"""Re-score finished jobs with other tracing/classification settings, without reconstructing.

``ptychobench-rescore SWEEP_DIR [--set key=value ...]`` reads every job's estimates
(``estimates.npz``, ``volume.npy``) and ``provenance.json`` under ``SWEEP_DIR``, loads the
(cached) dataset's ground truth, runs every applicable scorer again with the job's ``scoring``
config updated by ``--set`` (keys of :class:`experiments.scoring.ScoringConfig`), rewrites
``metrics.json`` (atomically, replacing the keys the scorers wrote, keeping the run's timings and
loss, recording the new scoring settings) and the figures, then rebuilds the results table.
Failed jobs stay failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from experiments.collect import collect, write_tables
from experiments.job import job_dataset
from experiments.scoring import ScoringConfig, Truth, public, score_figures, score_or_fail
from reconstruct.result import load_estimates
from simulate.fileio import atomic_write_json
from simulate.pipeline import section


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["non_atom=true", "sigma=0.4"]`` → typed ScoringConfig overrides (refused by name)."""
    fields = {f.name: f for f in dataclasses.fields(ScoringConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: use key=value with key one of {sorted(fields)}")
        out[key] = json.loads(text) if text not in ("None", "null") else None
    return out


def rescore_job(job_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Re-score one job directory in place; returns the new record (None if not a job)."""
    metrics, prov = job_dir / "metrics.json", job_dir / "provenance.json"
    if not (metrics.is_file() and prov.is_file()):
        return None
    record = json.loads(metrics.read_text())
    estimates = load_estimates(job_dir / "estimates.npz")
    if record.get("status") != "ok" or not estimates:
        return record
    cfg = json.loads(prov.read_text())["config"]
    cfg["scoring"] = {**cfg.get("scoring", {}), **settings}
    ds = job_dataset(cfg | {"progress": False})
    truth = Truth(ds)
    scoring = section("scoring", ScoringConfig, cfg["scoring"])
    result = score_or_fail(estimates, None, truth, scoring)
    score_figures(job_dir, estimates, result, truth)
    new = {k: v for k, v in record.items() if k not in record.get("score_keys", [])}
    new = public(new | result | {"scoring": cfg["scoring"]})
    atomic_write_json(metrics, new)
    return new


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="scoring overrides, e.g. non_atom=true sigma=0.4")
    args = ap.parse_args(argv)
    settings = parse_settings(args.set)
    jobs = sorted(p.parent for p in args.sweep_dir.rglob("metrics.json"))
    if not jobs:
        raise SystemExit(f"no metrics.json under {args.sweep_dir}")
    for job in jobs:
        rescore_job(job, settings)
    csv, md = write_tables(collect(args.sweep_dir), args.sweep_dir)
    print(md.read_text())
    print(f"results: {csv}")


if __name__ == "__main__":
    main()
