"""Time one forward + backward + update iteration of multislice ptychography per pattern.

Cases (issue 3):
  a: 1,600 patterns (40 x 40 scan), 64 x 64 pixels, 10 slices, 1 probe mode;
  b: 128 x 128 pixels, 6 slices, 12 probe modes (``--patterns-b``, default 256).

One iteration is a pass over all patterns in mini-batches through :func:`reconstruct.optimize`
with the object, probe and positions all learnable (Adam). Prints patterns/s and ms/pattern.

    python benchmarks/bench_multislice.py --case a b --iters 2
    python benchmarks/bench_multislice.py --device cuda --patterns-b 1600

Not a test. py4DSTEM and PtyRAD are not dependencies: ``--py4dstem PYTHON`` times py4DSTEM
0.14's ``MultislicePtychography`` and ``--ptyrad PYTHON`` PtyRAD 1.0's ``PtychoModel``
(``benchmarks/ptyrad_runner.py``) on the same arrays, each with the interpreter of its own venv
(see docs/benchmarks.md). The tools are timed in turn, repetitions interleaved; every ratio is
a tool's ms/pattern over ours.

    OMP_NUM_THREADS=1 python benchmarks/bench_multislice.py --case a --threads 1 --repeat 3 \
        --py4dstem /tmp/p4venv/bin/python --ptyrad /tmp/ptyradvenv/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variant  # noqa: E402

from reconstruct import (  # noqa: E402
    GroupSettings,
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    amplitude_loss,
    energy2sigma,
    index_batches,
    optimize,
    probe_from_aberrations,
    scan_grid,
)
from reconstruct.sampling import fast_size  # noqa: E402

ENERGY, SEMIANGLE, DEFOCUS = 200e3, 25e-3, 100.0  # eV, rad, Å
CASES = {
    "a": dict(pixels=64, slices=10, modes=1, scan=40, sampling=0.1, step_px=2, thickness=2.0),
    "b": dict(pixels=128, slices=6, modes=12, scan=16, sampling=0.1, step_px=4, thickness=3.0),
}


def build(case: dict, n_patterns: int, device: str) -> tuple[MultislicePtychography, torch.Tensor]:
    """Synthetic truth -> data, then a model initialised away from the truth."""
    scan = int(math.ceil(math.sqrt(n_patterns)))
    m, s, step = case["pixels"], case["sampling"], case["step_px"]
    n = fast_size(scan * step + m + 2, (2, 3, 5))
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


def warm_problem(case: dict, n_patterns: int, batch: int, device: str,
                 chunk: int | None = None):  # noqa: ANN201
    """The bare model's problem (object, probe and positions learned by Adam) after one
    untimed warm-up iteration: ``(model, data, loss_fn, batches, settings)``."""
    model, data = build(case, n_patterns, device)
    settings = {
        "object": GroupSettings(lr=1.0),
        "probe": GroupSettings(lr=1e-4),
        "positions": GroupSettings(lr=1e-3),
    }

    def loss_fn(m, idx):
        return amplitude_loss(m(idx), data[idx])

    batches = index_batches(n_patterns, batch, device=device)
    optimize(model, loss_fn, batches, settings, n_iter=1, progress=False, chunk_size=chunk)
    return model, data, loss_fn, batches, settings


def time_ours(case: dict, n_patterns: int, batch: int, iters: int, device: str,
              chunk: int | None = None) -> dict:
    model, data, loss_fn, batches, settings = warm_problem(case, n_patterns, batch, device,
                                                           chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    history = optimize(model, loss_fn, batches, settings, n_iter=iters, progress=False,
                       chunk_size=chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / iters
    # PtyRAD's loss_single for comparison: RMS amplitude error over the mean amplitude (our
    # amplitude loss sums over the pixels of a pattern)
    amplitude = data.clamp_min(0).sqrt()
    nrmse = math.sqrt(history.loss[-1] / amplitude[0].numel()) / float(amplitude.mean())
    return {**rates(seconds, n_patterns), "final_loss": history.loss[-1], "final_nrmse": nrmse}


def time_variant(name: str, case: dict, n_patterns: int, batch: int, iters: int, device: str,
                 chunk: int | None = None) -> dict:
    """A registered variant end to end (:func:`bench_variant.time_variant`) on the case."""
    seconds, loss = bench_variant.time_variant(name, case, n_patterns, batch, iters, device,
                                               (ENERGY, SEMIANGLE, DEFOCUS), chunk)
    return {**rates(seconds, n_patterns), "final_loss": loss}


# torch.profiler op names -> where the time goes (self CPU time; the first match wins; ops
# called inside the optimiser step count as "Adam update")
PROFILE_GROUPS = {
    "FFTs": ("aten::_fft_",),
    "patch scatter (index_add, index_put)": ("aten::index_add", "aten::index_put",
                                             "aten::_index_put", "aten::scatter"),
    "patch gather (index, cat)": ("aten::index", "aten::cat"),
    "multiplies": ("aten::mul",),
    "copies (clone, copy_, conj)": ("aten::copy_", "aten::clone", "aten::contiguous",
                                    "aten::conj", "aten::_conj", "aten::resolve_conj",
                                    "aten::_to_copy"),
    "transmission (polar, exp)": ("aten::polar", "aten::exp", "aten::complex"),
    "other elementwise, sums": ("aten::sum", "aten::abs", "aten::pow", "aten::sub",
                                "aten::add", "aten::sqrt", "aten::div", "aten::real",
                                "aten::imag", "aten::view_as", "aten::sgn", "aten::neg",
                                "aten::remainder", "aten::lerp"),
    "allocation, zeros, fill": ("aten::zero", "aten::fill_", "aten::empty"),
}


def profile_ours(case: dict, n_patterns: int, batch: int, device: str,
                 chunk: int | None = None, top: int = 12) -> None:
    """Print where one iteration of ours spends its time (torch.profiler, CPU self time of each
    op, grouped by :data:`PROFILE_GROUPS`), after an unprofiled warm-up iteration."""
    from torch.profiler import ProfilerActivity, profile

    model, _, loss_fn, batches, settings = warm_problem(case, n_patterns, batch, device, chunk)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimize(model, loss_fn, batches, settings, n_iter=1, progress=False, chunk_size=chunk)
    wall = time.perf_counter() - start
    print_profile(f"ours ({n_patterns} patterns, batch {batch}, chunk {chunk})",
                  runner().profile_ops(prof), wall, top)


def runner():  # noqa: ANN201
    """``ptyrad_runner.py`` as a module (its top level needs only numpy and torch)."""
    spec = importlib.util.spec_from_file_location("ptyrad_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def print_profile(title: str, profile: dict, seconds: float, top: int = 12) -> None:
    """Print a :func:`ptyrad_runner.profile_ops` summary grouped by :data:`PROFILE_GROUPS`."""
    groups = {"Adam update": [profile["optimizer_s"], 0.0]}
    groups.update({name: [0.0, 0.0] for name in [*PROFILE_GROUPS, "other"]})
    for op, (t, _, backward) in profile["ops"].items():
        name = next((g for g, keys in PROFILE_GROUPS.items() if op.startswith(keys)), "other")
        groups[name][0] += t
        groups[name][1] += backward
    total = sum(t for t, _ in groups.values())
    print(f"profile of {title}: {seconds:.2f} s per iteration under the profiler, "
          f"{total:.2f} s of aten self time (share; seconds; of which in the backward)")
    for name, (t, backward) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:38s} {100 * t / total:5.1f} %  {t:7.3f} s  {backward:7.3f} s")
    print("  top ops outside the optimiser (share; seconds; in the backward; calls):")
    for op, (t, count, backward) in sorted(profile["ops"].items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {op:34s} {100 * t / total:5.1f} %  {t:7.3f} s  {backward:7.3f} s  {count:6d}")


def rates(seconds: float, n_patterns: int) -> dict:
    """``seconds`` per iteration over ``n_patterns`` as patterns/s and ms/pattern."""
    return {
        "seconds_per_iter": seconds,
        "patterns": n_patterns,
        "patterns_per_s": n_patterns / seconds,
        "ms_per_pattern": 1e3 * seconds / n_patterns,
    }


def run_script(python: str, script: str | Path, files: dict[str, Callable[[Path], None]]) -> dict:
    """Run ``python SCRIPT FILE...`` (``script`` a file, or a ``str`` of source code; each file
    written by its writer into a temporary folder) and parse the last stdout line as JSON;
    ``{"error": last stderr line}`` if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, write in files.items():
            paths.append(Path(tmp, name))
            write(paths[-1])
        if not isinstance(script, Path):
            Path(tmp, "run.py").write_text(script)
            script = Path(tmp, "run.py")
        run = subprocess.run([python, str(script), *map(str, paths)], capture_output=True,
                             text=True)
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr else "failed"}
    return json.loads(run.stdout.strip().splitlines()[-1])


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
    result = run_script(python, PY4DSTEM_SCRIPT, {
        "spec.json": lambda p: p.write_text(json.dumps(spec)),
        "data.npy": lambda p: np.save(p, patterns.astype(np.float32)),
    })
    return result if "error" in result else rates(result["seconds_per_iter"], n_patterns)


RUNNER = Path(__file__).with_name("ptyrad_runner.py")


def time_ptyrad(python: str, case: dict, n_patterns: int, batch: int, iters: int,
                device: str = "cpu", threads: int | None = None, profile: bool = False,
                chunk: int | None = None) -> dict:
    """Time PtyRAD 1.0 (``ptyrad_runner.py`` in its own venv) from our initial model: the same
    patterns, zero object (phase object; PtyRAD learns ``objp``), probe modes (scaled to
    PtyRAD's orthonormal FFT), positions (top-left corner + sub-pixel shift), slices and batch
    size; Adam on object, probe and positions with our learning rates in PtyRAD's units.
    ``chunk``: PtyRAD's mini-batches of ``chunk`` patterns, gradients accumulated over
    ``batch / chunk`` of them per update (its ``grad_accumulation``)."""
    model, data = build(case, n_patterns, "cpu")
    m, s = case["pixels"], case["sampling"]
    with torch.no_grad():
        modes = model.probe()
        # PtyRAD's pattern sums to sum |probe|**2 (fft2 norm="ortho"); ours to the data's sum
        scale = torch.sqrt(data.sum((-2, -1)).mean() / (modes.abs() ** 2).sum())
        probe = (modes * scale).numpy()
        pixels = model.positions / s
        centre = torch.round(pixels)
    corners = (centre - m // 2).numpy().astype(np.int16)
    n = model.object.potential.shape[-1]
    if corners.min() < 0 or corners.max() + m > n:
        return {"error": f"scan leaves the {n}-pixel object (PtyRAD does not wrap around)"}
    spec = {
        "batch": batch, "iters": iters, "device": device,
        "threads": threads or torch.get_num_threads(), "kv": ENERGY / 1e3, "dx": s,
        "dz": case["thickness"],
        "lr_objp": energy2sigma(ENERGY) * 1.0,  # ours: 1 V Å per step on the potential
        # PtyRAD's default 1e-4 at its default scale (patterns divided by their maximum, probe
        # intensity = mean pattern sum); ours acts on normalised modes and has no equivalent
        "lr_probe": 1e-4 * float(data.max()) ** 0.5,
        "lr_pos": 1e-3 / s,  # ours: 1e-3 Å
        "profile": profile,
        "chunk": chunk,
    }
    arrays = {
        "measurements": data.numpy().astype(np.float32),
        "obj": np.ones((1, case["slices"], n, n), np.complex64),
        "probe": probe.astype(np.complex64),
        "crop_pos": corners,
        "probe_pos_shifts": (pixels - centre).numpy().astype(np.float32),
    }
    result = run_script(python, RUNNER, {
        "spec.json": lambda p: p.write_text(json.dumps(spec)),
        "arrays.npz": lambda p: np.savez(p, **arrays),
    })
    if "error" in result:
        return result
    return {**result, **rates(result["seconds_per_iter"], n_patterns)}


# A timer: (case, n_patterns, batch, iters, device) -> dict with "ms_per_pattern" (and
# "patterns_per_s", "seconds_per_iter", optionally "final_nrmse"), or {"error": message}.
Timer = Callable[[dict, int, int, int, str], dict]


def timers(args: argparse.Namespace) -> dict[str, Timer]:
    """The compared tools, in the order they run in each repetition; the first is the
    reference of the ratios. A new tool is one more entry with the ``Timer`` signature, e.g. a
    registered reconstruction variant: ``tools["fpp"] = partial(time_variant, "fpp")``."""
    tools: dict[str, Timer] = {
        "ours": lambda case, n, batch, iters, device: time_ours(
            case, n, batch, iters, device, args.chunk
        ),
    }
    if args.py4dstem:
        tools["py4DSTEM"] = lambda case, n, batch, iters, device: time_py4dstem(
            args.py4dstem, case, n, batch, iters
        )
    if args.variant:
        tools[args.variant] = partial(time_variant, args.variant, chunk=args.chunk)
    if args.ptyrad:
        tools["PtyRAD"] = partial(time_ptyrad, args.ptyrad, threads=args.threads)
        if args.ptyrad_chunk:
            tools[f"PtyRAD {args.ptyrad_chunk}x{args.batch // args.ptyrad_chunk}"] = partial(
                time_ptyrad, args.ptyrad, threads=args.threads, chunk=args.ptyrad_chunk
            )
    return tools


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
    parser.add_argument("--ptyrad", default=None, help="python of a venv with PtyRAD 1.0")
    parser.add_argument("--variant", default=None,
                        help="also time a registered variant end to end (e.g. fpp)")
    parser.add_argument("--ptyrad-chunk", type=int, default=None,
                        help="also time PtyRAD with mini-batches of this many patterns and "
                        "grad_accumulation batch/chunk (the analogue of --chunk)")
    parser.add_argument("--profile", action="store_true",
                        help="profile one iteration of ours (and of PtyRAD with --ptyrad; "
                        "torch.profiler) instead of timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    tools = timers(args)
    for name in args.case:
        if args.profile:
            n = args.patterns_a if name == "a" else args.patterns_b
            profile_ours(CASES[name], n, args.batch, args.device, args.chunk)
            if args.ptyrad:
                result = time_ptyrad(args.ptyrad, CASES[name], n, args.batch, 1, args.device,
                                     args.threads, profile=True)
                if "error" in result:
                    print(f"PtyRAD not profiled: {result['error']}")
                else:
                    print_profile(f"PtyRAD ({n} patterns, batch {args.batch})",
                                  result["profile"], result["seconds_per_iter"])
        else:
            report(name, args, tools)


def report(name: str, args: argparse.Namespace, tools: dict[str, Timer]) -> None:
    """Time every tool ``--repeat`` times, interleaved; print each result and the medians with
    the ratios (a tool's ms/pattern over the first tool's, per repetition)."""
    case = CASES[name]
    n = args.patterns_a if name == "a" else args.patterns_b
    print(f"case {name} {case}, {n} patterns, batch {args.batch}", flush=True)
    reference = next(iter(tools))
    ms: dict[str, list[float]] = {tool: [] for tool in tools}
    ratios: dict[str, list[float]] = {tool: [] for tool in tools}
    for rep in range(args.repeat):
        first = None
        for tool, timer in tools.items():
            result = timer(case, n, args.batch, args.iters, args.device)
            if "error" in result:
                print(f"case {name}: {tool} not timed: {result['error']}", flush=True)
                continue
            ms[tool].append(result["ms_per_pattern"])
            line = (
                f"case {name} rep {rep + 1}: {tool} {result['patterns_per_s']:.1f} patterns/s, "
                f"{result['ms_per_pattern']:.2f} ms/pattern ({result['seconds_per_iter']:.2f} s "
                f"per iteration)"
            )
            if "final_nrmse" in result:
                line += f", final amplitude NRMSE {result['final_nrmse']:.4f}"
            if tool == reference:
                first = result["ms_per_pattern"]
            elif first is not None:
                ratios[tool].append(result["ms_per_pattern"] / first)
                line += f"; {ratios[tool][-1]:.1f}x the time of {reference}"
            print(line, flush=True)
    parts = []
    for tool, values in ms.items():
        if not values:
            continue
        part = f"{tool} {np.median(values):.2f} ms/pattern"
        if ratios[tool]:
            r = ratios[tool]
            part += f" ({np.median(r):.1f}x, range {min(r):.1f}-{max(r):.1f}x)"
        parts.append(part)
    print(f"case {name}: medians: " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
