"""LOT's cost per iteration against the atom count (issue 15): time and peak memory of one
forward + backward of the ``lot`` model (rendering, interaction, sampling, loss) for trimmed
Pt decahedra in paper 004's 108 Å cube, each size in its own process::

    OMP_NUM_THREADS=2 python benchmarks/bench_lot.py --atoms 3000 10000 25790 --tilts 4

The rendering splats each atom onto its own window, so its cost is linear in atoms x tilts;
the interaction (FFT convolutions of every slice) depends on the image grid and the tilts,
not on the atoms. Both parts are reported, with the rendering's cost per atom and tilt. The
full decahedron at 72 tilts follows by scaling the per-tilt figures (tilts are independent).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def _data(n_tilts: int, cell: float, step: float, device: str):
    from reconstruct.data import TomoData

    g = np.arange(0, cell, step)
    pos = torch.as_tensor(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2),
                          dtype=torch.float32, device=device)
    euler = torch.zeros(n_tilts, 3, device=device)
    euler[:, 1] = torch.linspace(-math.radians(72), math.radians(70), n_tilts)
    n = round(cell / 0.4)
    return TomoData((n, n, n), 0.4, euler, torch.zeros(n_tilts, 2, device=device), 300e3,
                    0.025, {}, haadf_positions=pos.expand(n_tilts, -1, -1),
                    haadf=torch.zeros(n_tilts, len(g), len(g), device=device), species=(78,))


def _atoms(n_atoms: int) -> torch.Tensor:
    from simulate.models.decahedron import decahedron_points, trim_shells

    pos = trim_shells(decahedron_points(18, 16, 2, 3.92), n_atoms) + 54.0
    return torch.as_tensor(pos, dtype=torch.float32)


def measure(n_atoms: int, n_tilts: int, mode: str, device: str, repeat: int) -> dict:
    """One size: seconds per forward + backward, of which the rendering, and peak RSS."""
    from reconstruct.haadf import build_interaction
    from reconstruct.variants import lot, variant_params

    data = _data(n_tilts, 108.0, 0.4, device)
    truth = _atoms(n_atoms).to(device)
    _, cfg = variant_params({"name": "lot", "interaction": mode})
    pixel, shape, n_slices = lot.render_grid(data, cfg)
    inter = build_interaction(data, mode, shape, pixel, n_slices, cfg.probe_model)
    ones = torch.ones(len(truth), device=device)
    model = lot.build_lot_model(data, cfg, truth, ones, ones * 0.3, inter, None)
    tilts = torch.arange(n_tilts, device=device)
    target = torch.zeros(n_tilts, data.haadf_positions.shape[1], device=device)

    def step() -> None:
        loss = 0.5 * (model(tilts) - target).square().mean()
        loss.backward()

    def render() -> None:
        model.atoms(model.angles, model.shifts, model.centre, model.shape,
                    (pixel, pixel), n_slices, model.thickness).sum().backward()

    out = {"atoms": len(truth), "tilts": n_tilts, "mode": mode, "grid": list(shape),
           "slices": n_slices}
    for name, fn in (("iteration_s", step), ("render_s", render)):
        fn()  # warm-up
        times = []
        for _ in range(repeat):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[name] = float(np.median(times))
    out["render_ns_per_atom_tilt"] = out["render_s"] / (len(truth) * n_tilts) * 1e9
    out["peak_rss_GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if device == "cuda":
        out["peak_cuda_GB"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atoms", type=int, nargs="+", default=[3000, 10000, 25790])
    ap.add_argument("--tilts", type=int, default=4)
    ap.add_argument("--mode", default="rigid", choices=["direct", "rigid", "adaptive"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.atoms[0], args.tilts, args.mode, args.device,
                                 args.repeat)))
        return
    rows = []
    for n in args.atoms:  # one process per size: peak memory is per size
        cmd = [sys.executable, __file__, "--one", "--atoms", str(n), "--tilts",
               str(args.tilts), "--mode", args.mode, "--device", args.device, "--repeat",
               str(args.repeat)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("| atoms | tilts | s/iteration | of which rendering | ns per atom x tilt | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['atoms']} | {r['tilts']} | {r['iteration_s']:.3f} | {r['render_s']:.3f} | "
              f"{r['render_ns_per_atom_tilt']:.0f} | {r['peak_rss_GB']:.2f} |")


if __name__ == "__main__":
    main()
