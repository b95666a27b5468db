"""Benchmark: trace, classify and score a 100,000-atom model on the CPU.

Run from the repository root:  python benchmarks/bench_metrics.py [--atoms N] [--noise S]

A CuAu-like fcc particle (a = 3.92 Å, 20 pm random displacements, two species of heights 1
and 2) is rendered as Gaussian blobs (σ = 0.45 Å) on a 0.4 Å grid with white noise, then
traced (smoothing 0.3 Å, threshold), classified (k-means on integrated intensities) and
matched to the truth. Rendering is not part of the timed metrics. Target: < 60 s in all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.classify import classify_species, integrated_intensity  # noqa: E402
from metrics.matching import match_atoms, score_atoms  # noqa: E402
from metrics.synthetic import render_gaussians  # noqa: E402
from metrics.tracing import trace_atoms  # noqa: E402

VOXEL = 0.4
LATTICE = 3.92


def fcc_model(n_atoms: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_atoms`` fcc positions ``[N, 3]`` (Å) with 20 pm rms jitter (clipped at 0.35 Å so
    nearest neighbours stay more than 2 Å apart), labels 29 / 79."""
    n = int(np.ceil((n_atoms / 4) ** (1 / 3)))
    cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    pos = ((grid + cell).reshape(-1, 3) * LATTICE)[: n_atoms] + 3.0
    jitter = rng.normal(0, 0.2 / np.sqrt(3), pos.shape)  # 20 pm rms in 3D
    norm = np.linalg.norm(jitter, axis=1, keepdims=True)
    pos += jitter * np.minimum(1.0, 0.35 / np.maximum(norm, 1e-12))  # pairs stay > 2 Å apart
    z = np.where(rng.random(len(pos)) < 0.5, 29, 79)
    return pos, z


def timed(label: str, fn, *args, **kwargs):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t
    print(f"{label:<44s} {dt:8.2f} s")
    return out, dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=100_000)
    parser.add_argument("--noise", type=float, default=0.05, help="noise std / Cu peak height")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pos, z = fcc_model(args.atoms, rng)
    shape = tuple(int(np.ceil((pos[:, ax].max() + 3.0) / VOXEL)) for ax in (2, 0, 1))
    print(f"atoms {len(pos)}, volume {shape} voxels of {VOXEL} Å "
          f"({np.prod(shape) / 1e6:.1f} M voxels)")
    t0 = time.perf_counter()
    vol = render_gaussians(pos, np.where(z == 79, 2.0, 1.0), 0.45, shape, VOXEL, cutoff=3.5)
    vol = (vol + rng.normal(0, args.noise, shape)).astype(np.float32)
    print(f"{'render phantom (not a metric)':<44s} {time.perf_counter() - t0:8.2f} s")
    total = 0.0
    traced, dt = timed("trace_atoms (smooth, maxima, refine)", trace_atoms, vol, VOXEL,
                       sigma=0.3, threshold=0.4)
    total += dt
    inten, dt = timed("integrated_intensity (r = 0.8 Å)", integrated_intensity, vol,
                      traced.positions, VOXEL, radius=0.8)
    total += dt
    classes, dt = timed("classify_species (k-means, auto non-atom)", classify_species, inten, 2,
                        atomic_numbers=[29, 79])
    total += dt
    _, dt = timed("match_atoms (sparse Hungarian)", match_atoms, traced.positions[
        classes.labels != 0], pos, 1.0)
    total += dt
    scores, dt = timed("score_atoms (incl. shift refinement)", score_atoms, traced.positions,
                       pos, classes.labels, z, refine_shift=True)
    total += dt
    print(f"{'total metrics time':<44s} {total:8.2f} s  (target < 60 s)")
    d = scores.to_dict()
    print(f"traced {len(traced)}, non-atoms {d['n_non_atom']}, TP {d['tp']}, FP {d['fp']}, "
          f"FN {d['fn']}")
    print(f"RMSD {d['rmsd_pm']:.2f} pm (offset removed {d['rmsd_offset_removed_pm']:.2f} pm), "
          f"tracing error {100 * d['tracing_error']:.3f} %, classification "
          f"{100 * d['classification_rate']:.3f} %")


if __name__ == "__main__":
    main()
