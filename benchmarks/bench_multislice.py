"""Time one forward + backward + update iteration of multislice ptychography per pattern.

Cases (issue 3):
  a: 1,600 patterns (40 x 40 scan), 64 x 64 pixels, 10 slices, 1 probe mode;
  b: 128 x 128 pixels, 6 slices, 12 probe modes (``--patterns-b``, default 256).

One iteration is a pass over all patterns in mini-batches through :func:`reconstruct.optimize`
with the object, probe and positions all learnable (Adam). Prints patterns/s and ms/pattern.

    python benchmarks/bench_multislice.py --case a b --iters 2
    python benchmarks/bench_multislice.py --device cuda --patterns-b 1600

Not a test. py4DSTEM is not a dependency; ``--py4dstem PYTHON`` times py4DSTEM 0.14's
``MultislicePtychography`` on the same arrays with that interpreter (a separate venv).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconstruct import (  # noqa: E402
    GroupSettings,
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    amplitude_loss,
    index_batches,
    optimize,
    probe_from_aberrations,
    scan_grid,
)

ENERGY, SEMIANGLE, DEFOCUS = 200e3, 25e-3, 100.0  # eV, rad, Å
CASES = {
    "a": dict(pixels=64, slices=10, modes=1, scan=40, sampling=0.1, step_px=2, thickness=2.0),
    "b": dict(pixels=128, slices=6, modes=12, scan=16, sampling=0.1, step_px=4, thickness=3.0),
}


def fast_size(n: int) -> int:
    """Smallest ``2**a 3**b 5**c >= n`` (FFT-friendly object grid; 146 = 2 x 73 is ~5x slower)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def build(case: dict, n_patterns: int, device: str) -> tuple[MultislicePtychography, torch.Tensor]:
    """Synthetic truth -> data, then a model initialised away from the truth."""
    scan = int(math.ceil(math.sqrt(n_patterns)))
    m, s, step = case["pixels"], case["sampling"], case["step_px"]
    n = fast_size(scan * step + m + 2)
    positions = scan_grid((m / 2 * s, m / 2 * s), (step * s, step * s), (scan, scan))
    positions = positions[:n_patterns]
    g = torch.Generator().manual_seed(0)
    potential = torch.rand(case["slices"], n, n, generator=g) * 100
    probe = probe_from_aberrations((m, m), (s, s), ENERGY, SEMIANGLE, {"defocus": DEFOCUS})

    def make(pot: torch.Tensor) -> MultislicePtychography:
        return MultislicePtychography(
            SlicedObject(pot, ENERGY, (s, s)),
            MixedProbe(probe, n_modes=case["modes"]),
            positions,
            Propagator((m, m), (s, s), ENERGY, case["thickness"]),
            (m, m),
        ).to(device)

    truth = make(potential)
    with torch.no_grad():
        data = torch.cat(
            [truth(i) for i in torch.split(torch.arange(n_patterns, device=device), 64)]
        )
    return make(torch.zeros_like(potential)), data


def time_ours(case: dict, n_patterns: int, batch: int, iters: int, device: str,
              chunk: int | None = None) -> dict:
    model, data = build(case, n_patterns, device)
    settings = {
        "object": GroupSettings(lr=1.0),
        "probe": GroupSettings(lr=1e-4),
        "positions": GroupSettings(lr=1e-3),
    }

    def loss_fn(m, idx):
        return amplitude_loss(m(idx), data[idx])

    batches = index_batches(n_patterns, batch, device=device)
    optimize(model, loss_fn, batches, settings, n_iter=1, progress=False,
             chunk_size=chunk)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimize(model, loss_fn, batches, settings, n_iter=iters, progress=False, chunk_size=chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / iters
    return {
        "seconds_per_iter": seconds,
        "patterns": n_patterns,
        "patterns_per_s": n_patterns / seconds,
        "ms_per_pattern": 1e3 * seconds / n_patterns,
    }


PY4DSTEM_SCRIPT = r"""
import json, sys, time, numpy as np, py4DSTEM
spec = json.load(open(sys.argv[1]))
data = np.load(sys.argv[2])
d = py4DSTEM.DataCube(data=data)
d.calibration.set_R_pixel_size(spec["step"]); d.calibration.set_R_pixel_units("A")
d.calibration.set_Q_pixel_size(spec["dk"]); d.calibration.set_Q_pixel_units("A^-1")
phase = py4DSTEM.process.phase
kwargs = dict(datacube=d, num_slices=spec["slices"], slice_thicknesses=spec["thickness"],
    energy=spec["energy"], semiangle_cutoff=spec["semiangle_mrad"], defocus=spec["defocus"],
    device="cpu", verbose=False)
if spec["modes"] > 1:
    ptycho = phase.MixedstateMultislicePtychography(num_probes=spec["modes"], **kwargs)
else:
    ptycho = phase.MultislicePtychography(**kwargs)
ptycho = ptycho.preprocess(
    plot_center_of_mass=False, plot_rotation=False, plot_probe_overlaps=False,
    force_com_rotation=0, force_com_transpose=False, vectorized_com_calculation=True,
)
options = dict(max_batch_size=spec["batch"], progress_bar=False, fix_probe=False,
               fix_positions=False)
ptycho.reconstruct(num_iter=1, reset=True, **options)
t0 = time.perf_counter()
ptycho.reconstruct(num_iter=spec["iters"], reset=False, **options)
print(json.dumps({"seconds_per_iter": (time.perf_counter() - t0) / spec["iters"]}))
"""


def time_py4dstem(python: str, case: dict, n_patterns: int, batch: int, iters: int) -> dict:
    """Time py4DSTEM 0.14 (Mixedstate)MultislicePtychography, gradient descent, CPU."""
    _, data = build(case, n_patterns, "cpu")
    scan = int(math.sqrt(n_patterns))
    m = case["pixels"]
    patterns = data.numpy().reshape(scan, scan, m, m)  # centred (fftshifted) like a camera
    spec = {
        "step": case["step_px"] * case["sampling"],
        "dk": 1 / (m * case["sampling"]),
        "slices": case["slices"],
        "thickness": case["thickness"],
        "energy": ENERGY,
        "semiangle_mrad": SEMIANGLE * 1e3,
        "defocus": DEFOCUS,
        "modes": case["modes"],
        "batch": batch,
        "iters": iters,
    }
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.json").write_text(json.dumps(spec))
        np.save(Path(tmp, "data.npy"), patterns.astype(np.float32))
        Path(tmp, "run.py").write_text(PY4DSTEM_SCRIPT)
        run = subprocess.run(
            [
                python,
                str(Path(tmp, "run.py")),
                str(Path(tmp, "spec.json")),
                str(Path(tmp, "data.npy")),
            ],
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr else "failed"}
    seconds = json.loads(run.stdout.strip().splitlines()[-1])["seconds_per_iter"]
    return {
        "seconds_per_iter": seconds,
        "patterns_per_s": n_patterns / seconds,
        "ms_per_pattern": 1e3 * seconds / n_patterns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=["a", "b"], choices=sorted(CASES))
    parser.add_argument("--patterns-a", type=int, default=1600)
    parser.add_argument("--patterns-b", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None,
                        help="evaluate each batch in chunks of this many patterns (ours)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--py4dstem", default=None, help="python of a venv with py4DSTEM 0.14")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    for name in args.case:
        report(name, args)


def report(name: str, args: argparse.Namespace) -> None:
    """Time ours (and py4DSTEM) ``--repeat`` times, interleaved; print each and the medians."""
    case = CASES[name]
    n = args.patterns_a if name == "a" else args.patterns_b
    ours_ms, ref_ms = [], []
    for _ in range(args.repeat):
        result = time_ours(case, n, args.batch, args.iters, args.device, args.chunk)
        ours_ms.append(result["ms_per_pattern"])
        print(
            f"case {name} {case}: ours {result['patterns_per_s']:.1f} patterns/s, "
            f"{result['ms_per_pattern']:.2f} ms/pattern ({result['seconds_per_iter']:.2f} s "
            f"per iteration of {n} patterns)",
            flush=True,
        )
        if args.py4dstem:
            ref = time_py4dstem(args.py4dstem, case, n, args.batch, args.iters)
            if "error" in ref:
                print(f"case {name}: py4DSTEM not timed: {ref['error']}", flush=True)
                continue
            ref_ms.append(ref["ms_per_pattern"])
            print(
                f"case {name}: py4DSTEM {ref['patterns_per_s']:.1f} patterns/s, "
                f"{ref['ms_per_pattern']:.2f} ms/pattern; speed-up "
                f"{ref['ms_per_pattern'] / result['ms_per_pattern']:.1f}x",
                flush=True,
            )
    summary = f"case {name}: median ours {np.median(ours_ms):.2f} ms/pattern"
    if ref_ms:
        ratios = [r / o for r, o in zip(ref_ms, ours_ms, strict=False)]
        summary += (
            f", py4DSTEM {np.median(ref_ms):.2f} ms/pattern, speed-up median "
            f"{np.median(ratios):.1f}x (range {min(ratios):.1f}-{max(ratios):.1f}x)"
        )
    print(summary, flush=True)


if __name__ == "__main__":
    main()
