"""One data-parallel fit of a tiny tilt series (test helper, not a test module).

    python tests/ddp_worker.py VARIANT OUT.npz               # one process
    torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py VARIANT OUT.npz

:func:`estimates` builds the self-consistent tiny series of ``tiny.py`` in float64 (so that a
1e-6 comparison is far above the rounding of differently ordered sums) and runs ``VARIANT``
(a key of :data:`PARAMS`) through the shared fit layer; launched by torchrun, in a gloo process
group. Rank 0 saves the estimates and the loss history to ``OUT.npz``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny import self_consistent_data  # noqa: E402

import reconstruct.variants  # noqa: E402, F401  (registers the variants)
from reconstruct.distributed import process_group, world  # noqa: E402
from reconstruct.variants.base import variant_params  # noqa: E402

PARAMS = {
    # mini-batches of 20 of a tilt's 64 positions, each split over the ranks, in chunks of 8
    "mset": {"name": "mset", "iterations": 3, "batch_size": 20, "chunk_size": 8},
    # one update per iteration from every tilt: the ranks' shares span tilts
    "mset_accumulated": {"name": "mset", "iterations": 3, "update": "accumulated",
                         "chunk_size": 24},
    # the probe (complex) and the positions refined too, from the second and third iteration
    "fpp": {"name": "fpp", "iterations": 4, "batch_size": 20, "chunk_size": 8,
            "probe_lr": 1e-5, "probe_start": 1, "positions_lr": 1e-3, "positions_start": 2},
}


def estimates(name: str) -> dict[str, np.ndarray]:
    """The variant's array estimates and ``loss`` (history) on the tiny series, in float64."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        data, _ = self_consistent_data(tilts=3)
        variant, params = variant_params(PARAMS[name])
        rec = variant.reconstruct(data, params, seed=0, progress=False)
    finally:
        torch.set_default_dtype(default)
    out = {k: np.asarray(v) for k, v in rec.estimates().items()
           if isinstance(v, np.ndarray | torch.Tensor)}
    return out | {"loss": np.asarray(rec.history.loss)}


def main(name: str, out: str) -> None:
    torch.set_num_threads(1)
    with process_group("WORLD_SIZE" in os.environ, "cpu"):
        arrays = estimates(name)
        if world()[0] == 0:
            np.savez(out, **arrays)
            print(f"world size {world()[1]}: saved {sorted(arrays)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
