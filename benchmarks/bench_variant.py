"""Time a registered reconstruction variant end to end on the cases of bench_multislice.py.

``bench_multislice.py --variant fpp`` adds it to the compared tools; see docs/benchmarks.md.
"""

from __future__ import annotations

import math

import torch

from reconstruct.data import TomoData
from reconstruct.variants import VARIANTS, variant_params
from reconstruct.variants.ptycho import build_model

Optics = tuple[float, float, float]  # energy eV, semiangle rad, abTEM defocus Å


def variant_data(case: dict, n_patterns: int, device: str, optics: Optics) -> TomoData:
    """A :class:`TomoData` of one projection with the case's pattern size, slices and modes:
    a periodic cell as large as the probe window (the variants' data contract: detector
    sampling 1 / cell), scanned ``n_patterns`` times, patterns from a random object."""
    m, s = case["pixels"], case["sampling"]
    scan = int(math.ceil(math.sqrt(n_patterns)))
    g = torch.arange(scan, dtype=torch.float32) * (m * s / scan)
    pos = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(1, -1, 2)[:, :n_patterns]
    depth = case["slices"] * case["thickness"]
    data = TomoData(volume_shape=(round(depth / s), m, m), voxel_size=s,
                    euler=torch.zeros(1, 3, device=device), shifts=torch.zeros(1, 2),
                    energy=optics[0], semiangle=optics[1], aberrations={"C10": -optics[2]},
                    positions=pos.to(device), patterns=torch.zeros(1, n_patterns, m, m))
    data.patterns = data.patterns.to(device)
    cfg = variant_params({"name": "fpp", "n_slices": case["slices"],
                          "probe_modes": case["modes"], "state_noise": 100.0})[1]
    truth = build_model(data, cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        data.patterns = torch.cat([truth(i) for i in torch.split(
            torch.arange(n_patterns, device=device), 64)])[None]
    return data


def time_variant(name: str, case: dict, n_patterns: int, batch: int, iters: int, device: str,
                 optics: Optics, chunk: int | None = None) -> tuple[float, float]:
    """A registered variant (e.g. ``fpp``) end to end: ``VARIANTS[name].reconstruct`` with
    object, probe and positions learned (Adam), mini-batches of ``batch``; the time per
    iteration is the variant's own (``seconds_per_iteration``), after a 1-iteration warm-up.
    Returns (seconds per iteration, final loss)."""
    data = variant_data(case, n_patterns, device, optics)
    params = {"name": name, "n_slices": case["slices"], "probe_modes": case["modes"],
              "batch_size": batch, "chunk_size": chunk, "probe_lr": 1e-4, "probe_start": 0,
              "positions_lr": 1e-3, "positions_start": 0, "object_lr": 1.0,
              "post_align": False, "divergence_factor": 1e9}  # timing only, as "ours"
    variant = VARIANTS[name]
    variant.reconstruct(data, variant_params(params | {"iterations": 1})[1])  # warm-up
    rec = variant.reconstruct(data, variant_params(params | {"iterations": iters})[1])
    return rec.seconds_per_iteration, rec.history.loss[-1]
