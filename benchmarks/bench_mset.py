"""MSET's cost per chunk of positions: the probe shifted over the shared cell (default) against
patches of the cell extracted per position, side by side in one run (issue 12).

MSET's probe window is the whole cell, so ``MultislicePtychography`` can shift the probe by the
whole position and share the rotated, binned volume between positions (``share_whole_object``)
instead of copying one cell-sized patch per position and slice. Both give the same patterns
(``tests/test_reconstruct_abtem.py`` checks both routes against abTEM)::

    OMP_NUM_THREADS=1 python benchmarks/bench_mset.py --n 32 --chunk 64 --repeat 5

times forward + backward (gradient of the volume only, as in the loop) of one chunk on a
``n³`` cell of 0.4 Å voxels at one tilt, for MSET (``n`` slices) and SSET (one slice),
repetitions interleaved.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reconstruct.data import TomoData
from reconstruct.variants.mset import MultisliceTomography


def _data(n: int, step: float = 0.8, voxel: float = 0.4) -> TomoData:
    g = np.arange(0, n * voxel, step)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    pos_t = torch.as_tensor(pos, dtype=torch.float32)[None]
    return TomoData((n, n, n), voxel, torch.tensor([[0.0, 0.3, 0.0]]), torch.zeros(1, 2),
                    300e3, 0.021, {"C10": 200.0}, positions=pos_t,
                    patterns=torch.zeros(1, pos_t.shape[1], n, n))


def _model(data: TomoData, n_slices: int, share: bool) -> MultisliceTomography:
    model = MultisliceTomography(data, n_slices, data.volume_shape[1])
    model.ptycho.share_whole_object = share
    for p in model.parameters():
        p.requires_grad_(p is model.volume)  # the loop freezes groups without settings
    with torch.no_grad():
        model.volume.uniform_(0, 10, generator=torch.Generator().manual_seed(0))
    return model


def _time(model: MultisliceTomography, chunk: int) -> float:
    idx = torch.arange(chunk)
    t0 = time.perf_counter()
    model.volume.grad = None
    model(0, idx).sum().backward()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="cell of n^3 voxels")
    ap.add_argument("--chunk", type=int, default=64, help="positions per chunk")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = _data(args.n)
    for label, slices in (("mset", args.n), ("sset", 1)):
        models = {share: _model(data, slices, share) for share in (True, False)}
        for m in models.values():  # warm-up
            _time(m, args.chunk)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeat):
            for share, m in models.items():
                times[share].append(_time(m, args.chunk))
        shared, patches = (1e3 * float(np.median(times[s])) for s in (True, False))
        print(f"{label}: shared object {shared:.1f} ms, patches {patches:.1f} ms per chunk of "
              f"{args.chunk} (median of {args.repeat}); speed-up {patches / shared:.2f}x")


if __name__ == "__main__":
    main()
