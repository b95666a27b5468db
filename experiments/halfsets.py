"""Resolution without ground truth: the FSC between two independent half-set reconstructions.

``scoring.half_sets`` (paper 000, Fig. 3d):

- ``poisson``: the method runs on two independent Poisson realisations of the dataset
  (``from_dataset(..., realisation=0 | 1)``), each at the configured dose;
- ``subsample``: on two disjoint, interleaved subsets of the scan rows, each holding
  ``1 / scoring.half_subsample`` of the patterns (2 = the two halves of the data);
- ``none`` (default): nothing extra.

The FSC between the two volumes is reported at the half-bit and one-bit thresholds
(``fsc_half_bit_A``, ``fsc_one_bit_A``), beside the FSC of each against the true potential
(``fsc_halves_truth_A``, at 0.5), and drawn in ``fsc_halves.png``. This runs the method twice
more; it works for every variant that estimates a volume and knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.figures import save_figure
from experiments.scoring import ScoringConfig
from metrics import fourier_shell_correlation
from metrics.figures import plot_fsc
from reconstruct.data import TomoData, from_dataset, subsample_rows
from reconstruct.variants.base import Variant
from simulate.config import NoiseConfig
from simulate.errors import ConfigError

HALF_SETS = ("none", "poisson", "subsample")


def check_half_sets(cfg: ScoringConfig, noise: NoiseConfig) -> None:
    """Refuse a bad half-set setting by name, before any compute."""
    if cfg.half_sets not in HALF_SETS:
        raise ConfigError("scoring.half_sets", cfg.half_sets, f"one of {HALF_SETS}")
    if cfg.half_sets == "subsample" and cfg.half_subsample < 2:
        raise ConfigError("scoring.half_subsample", cfg.half_subsample, "an integer >= 2")
    if cfg.half_sets == "poisson" and not np.isfinite(noise.dose):
        raise ConfigError("scoring.half_sets", "poisson",
                          "none or subsample for noise-free data (noise.dose = inf): "
                          "its two realisations are identical")


def half_datasets(ds: Any, noise: NoiseConfig, device: torch.device, kinds: frozenset[str],
                  cfg: ScoringConfig, data: TomoData, max_memory_gb: float | None = None,
                  ) -> tuple[TomoData, TomoData]:
    """The two half-sets of ``data`` (read from ``ds`` again for ``poisson``, streamed beyond
    ``max_memory_gb`` like ``data``)."""
    if cfg.half_sets == "poisson":
        return data, from_dataset(ds, noise, device, realisation=1, kinds=kinds,
                                  max_memory_gb=max_memory_gb)
    f = cfg.half_subsample
    return subsample_rows(data, f, 0), subsample_rows(data, f, f // 2)


def score_half_sets(variant: Variant, params: Any, halves: tuple[TomoData, TomoData],
                    truth: Any, seed: int, out_dir: Path, first: np.ndarray | None = None
                    ) -> dict[str, Any]:
    """Reconstruct both halves (``first``: half A's volume, already reconstructed); the FSC
    between them and against the truth, and the figure."""
    volumes = [] if first is None else [np.asarray(first, dtype=np.float64)]
    for k, half in enumerate(halves[len(volumes):], start=len(volumes)):
        rec = variant.reconstruct(half, params, seed + k, False)
        if rec.volume is None:
            raise ConfigError("scoring.half_sets", "on",
                              f"none for '{variant.name}': it estimates no volume")
        volumes.append(np.asarray(torch.as_tensor(rec.volume).cpu(), dtype=np.float64))
    v = truth.voxel_size
    halves_fsc = fourier_shell_correlation(volumes[0], volumes[1], v)
    curves, labels = [halves_fsc], ["half-set A vs B"]
    out = {"fsc_half_bit_A": float(halves_fsc.resolution("half_bit")),
           "fsc_one_bit_A": float(halves_fsc.resolution("one_bit"))}
    if truth.has("truth/potential"):
        against = fourier_shell_correlation(volumes[0], truth.array("truth/potential"), v)
        curves.append(against)
        labels.append("half-set A vs truth")
        out["fsc_halves_truth_A"] = float(against.resolution(0.5))
    save_figure(plot_fsc(curves, labels, ("half_bit", "one_bit", 0.5)),
                out_dir / "fsc_halves.png")
    return out
