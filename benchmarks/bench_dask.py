"""Wall time of one simulation preset: serial (``compute=local``) against a dask LocalCluster.

    python benchmarks/bench_dask.py [--scale small] [--sample cuau] [--workers 2]

Both simulate the same config into fresh caches, one after the other in this run, and the
stored measurements are compared bitwise. ``local`` computes one tilt after another with dask's
threaded scheduler (its threads share the tilt's frozen-phonon configurations and scan
chunks); ``dask_local`` runs the whole graph of tilts x configurations on ``--workers``
processes of one thread each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from simulate.config import ComputeConfig
from simulate.pipeline import load_dataset, prepare

try:
    from bench_simulate import preset_config
except ImportError:  # run from the repository root
    from benchmarks.bench_simulate import preset_config


def timed(sim, compute: ComputeConfig, root: Path):
    """The dataset of ``sim`` simulated under ``compute`` into a fresh cache, and its time."""
    atoms = prepare(sim)
    t0 = time.perf_counter()
    ds = load_dataset(sim, root, progress=False, atoms=atoms, compute=compute)
    return ds, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--sample", default="cuau")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sim = preset_config(args.scale, args.sample)
    with tempfile.TemporaryDirectory() as tmp:
        serial, t_serial = timed(sim, ComputeConfig(), Path(tmp) / "serial")
        cluster, t_cluster = timed(
            sim, ComputeConfig(name="dask_local", workers=args.workers), Path(tmp) / "cluster")
        same = all(np.array_equal(serial.array(n), cluster.array(n))
                   for n in ("measurements/diffraction", "measurements/haadf")
                   if serial.has(n))
    shape = tuple(serial.meta["scan_shape"])
    print(f"{args.scale} {args.sample}: {sim.tilts.count} tilts x {sim.phonons.num_configs} "
          f"configurations, scan {shape}")
    print(f"  local (threaded, one tilt after another): {t_serial:8.1f} s")
    print(f"  dask_local, {args.workers} workers x 1 thread:    {t_cluster:8.1f} s "
          f"(serial / cluster = {t_serial / t_cluster:.2f})")
    print(f"  bitwise identical: {same}")


if __name__ == "__main__":
    main()
