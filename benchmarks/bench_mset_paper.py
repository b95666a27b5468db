"""One MSET iteration at the ``paper`` scale (paper 001: a 51.2 Å cell of 0.4 Å voxels, 128³,
slices of one voxel, a 0.4 Å raster of 128² positions per tilt, 20 tilts): its time and peak
device memory.

    python benchmarks/bench_mset_paper.py --device cuda                # the whole iteration
    python benchmarks/bench_mset_paper.py --device cpu --tilts 1 --positions 256   # a part

The data are random patterns on the paper's grid (the cost does not depend on their values).
``--tilts``/``--positions`` run a part of the iteration and extrapolate linearly to 20 tilts ×
128² positions (stated as an estimate).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import reconstruct.variants  # noqa: F401  (registers the variants)
from reconstruct.data import TomoData
from reconstruct.variants.base import variant_params

PAPER = {"n": 128, "voxel": 0.4, "step": 0.4, "tilts": 20, "pattern": 128}


def paper_data(n: int, tilts: int, positions: int, pattern: int, device: str) -> TomoData:
    """Random patterns ``[tilts, positions, pattern, pattern]`` on an ``n³`` cell, positions on
    the paper's raster (the first ``positions`` of it), tilts over ±75°."""
    v = PAPER["voxel"]
    g = np.arange(0, n * v, PAPER["step"])
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)[:positions]
    euler = torch.zeros(tilts, 3)
    euler[:, 1] = torch.linspace(-75, 75, tilts) * math.pi / 180
    pos = torch.as_tensor(grid, dtype=torch.float32).expand(tilts, -1, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    patterns = torch.rand(tilts, len(grid), pattern, pattern, generator=gen) / pattern**2
    return TomoData(volume_shape=(n, n, n), voxel_size=v, euler=euler.to(device),
                    shifts=torch.zeros(tilts, 2, device=device), energy=300e3, semiangle=0.021,
                    aberrations={"C10": 200.0}, positions=pos.to(device),
                    patterns=patterns.to(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=PAPER["n"])
    ap.add_argument("--tilts", type=int, default=PAPER["tilts"])
    ap.add_argument("--positions", type=int, default=PAPER["n"] ** 2)
    ap.add_argument("--chunk", type=int, default=256, help="positions per chunk")
    args = ap.parse_args()
    data = paper_data(args.n, args.tilts, args.positions, min(args.n, PAPER["pattern"]),
                      args.device)
    variant, params = variant_params({"name": "mset", "iterations": 1, "chunk_size": args.chunk})
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rec = variant.reconstruct(data, params, seed=0, progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    full = PAPER["tilts"] * args.n**2 / (args.tilts * args.positions)
    peak = (f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB peak"
            if args.device.startswith("cuda") else "peak memory: CPU run")
    print(f"mset {args.n}^3, {args.tilts} tilts x {args.positions} positions on {args.device}: "
          f"{dt:.1f} s for one iteration (incl. the R-factor pass), {peak}; "
          f"loss {rec.history.loss[-1]:.3g}")
    if full != 1:
        print(f"  extrapolated to {PAPER['tilts']} tilts x {args.n ** 2} positions: "
              f"{dt * full:.0f} s per iteration (estimate)")


if __name__ == "__main__":
    main()
