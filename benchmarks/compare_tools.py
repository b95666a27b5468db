"""Quality and speed of ``fpp``/``app`` against PtyRAD 1.0 and py4DSTEM 0.14 on one SrTiO3 set.

Issue 14, acceptance 4. The dataset is paper 002's ci SrTiO3 slab (``experiment=
paper002_mistilt``, mistilt ``--tilt`` mrad along x), simulated once and cached. Every tool gets
the same patterns, slices (``n_slices`` of the fpp preset through the cell depth), probe (our
``build_probe``, propagated to the first slice), positions, iterations and full batch, object
only (the preset fixes probe and positions), phase positivity; learning rates in each tool's
units equivalent to ours (PtyRAD: ``σ x object_lr`` rad per Adam step; py4DSTEM has no Adam: its
gradient descent with its default ``step_size``). Each tool's final object is converted to V Å
per slice (phase / σ), cut to our periodic cell, registered against the true projected
potential, and scored by OUR scorers (``experiments.scoring.score_or_fail``: FRC 0.5,
d(Sr–TiO), d(O–TiO)). ``NRMSE`` is PtyRAD's ``loss_single`` (RMS amplitude error over the mean
measured amplitude) of OUR forward model through the scored object, the same for every tool.

PtyRAD does not wrap around: its object is padded by half the probe window on each side and the
scan offset by the pad; the cell is the centre of it. py4DSTEM wraps its patches around its
object, so it gets the cell itself. Run (one thread per tool)::

    OMP_NUM_THREADS=1 python benchmarks/compare_tools.py --ptyrad /tmp/ptyradvenv/bin/python \\
        --py4dstem /tmp/p4venv/bin/python --iters 100 --tilt 0 --ptyrad-lr 5e-4 --out T.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_multislice import run_script  # noqa: E402

import experiments.cli  # noqa: E402, F401  (registers the configs, scorers and variants)
from experiments.job import job_dataset  # noqa: E402
from experiments.scoring import ScoringConfig, Truth, score_or_fail  # noqa: E402
from reconstruct import energy2sigma  # noqa: E402
from reconstruct.data import TomoData, from_dataset  # noqa: E402
from reconstruct.propagation import propagate  # noqa: E402
from reconstruct.regularize import slice_shifts  # noqa: E402
from reconstruct.variants.base import variant_params  # noqa: E402
from reconstruct.variants.ptycho import FPPConfig, build_model  # noqa: E402
from simulate.config import NoiseConfig  # noqa: E402
from simulate.pipeline import section  # noqa: E402

RUNNER = Path(__file__).with_name("ptyrad_runner.py")

PY4DSTEM_SCRIPT = r"""
import json, os, sys, time, numpy as np, py4DSTEM
spec = json.load(open(sys.argv[1])); a = np.load(sys.argv[2])
d = py4DSTEM.DataCube(data=a["patterns"])
d.calibration.set_R_pixel_size(spec["step"]); d.calibration.set_R_pixel_units("A")
d.calibration.set_Q_pixel_size(spec["dk"]); d.calibration.set_Q_pixel_units("A^-1")
p = py4DSTEM.process.phase.MultislicePtychography(
    datacube=d, num_slices=spec["slices"], slice_thicknesses=spec["dz"], energy=spec["energy"],
    semiangle_cutoff=spec["semiangle_mrad"], initial_probe_guess=a["probe"],
    initial_scan_positions=a["positions"], initial_object_guess=a["obj"],
    object_padding_px=(0, 0), object_type="potential", device="cpu", verbose=False)
c = spec["centre"]  # the patterns' zero frequency (px): shifted to the corner, never fitted
p.preprocess(plot_center_of_mass=False, plot_rotation=False, plot_probe_overlaps=False,
             force_com_rotation=0, force_com_transpose=False, force_com_shifts=(c, c),
             center_positions_in_fov=False, vectorized_com_calculation=True)
opts = dict(max_batch_size=spec["batch"], progress_bar=False, fix_probe=True,
            fix_positions=True, reset=True, seed_random=0)
if spec.get("evaluate"):
    p.reconstruct(num_iter=1, step_size=0.0, object_positivity=False, **opts)
    print(json.dumps({"own_error": p.error_iterations[0]})); sys.exit()
t0 = time.perf_counter()
p.reconstruct(num_iter=spec["iters"], step_size=spec["step_size"], object_positivity=True,
              **opts)
seconds = (time.perf_counter() - t0) / spec["iters"]
tmp = spec["save"] + ".tmp.npz"
np.savez(tmp, obj=np.asarray(p.object), positions_px=np.asarray(p._positions_px))
os.replace(tmp, spec["save"])
print(json.dumps({"seconds_per_iter": seconds, "own_error": p.error,
                  "error_first": p.error_iterations[0]}))
"""


def compose(tilt: float, algorithm: str, iters: int, cache: str) -> dict[str, Any]:
    """The job config of ``experiment=paper002_mistilt`` at ``tilt`` mrad (as the CLI)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    overrides = ["experiment=paper002_mistilt", f"sample.tilt_x={tilt}",
                 f"algorithm={algorithm}", f"algorithm.iterations={iters}", "progress=false",
                 f"cache_dir={cache}", "device=cpu"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def scores(obj: np.ndarray, v: float, truth: Truth, cfg: dict[str, Any]) -> dict[str, Any]:
    """Our scorers on an object ``[S, N, N]`` (V Å per slice) on the cell grid."""
    est = {"object_states": obj[None].astype(np.float64), "object_sampling": np.array([v, v])}
    return score_or_fail(est, None, truth, section("scoring", ScoringConfig, cfg["scoring"]))


def forward_nrmse(data: TomoData, obj: np.ndarray, tilt_mrad: Any = (0.0, 0.0),
                  thickness: float | None = None) -> float:
    """PtyRAD's ``loss_single`` of our forward model through ``obj [S, N, N]`` (V Å)."""
    cfg = FPPConfig(n_slices=obj.shape[0], initial_tilt=[float(t) for t in tilt_mrad],
                    thickness=thickness)
    model = build_model(data, cfg)
    with torch.no_grad():
        model.object.potential.copy_(torch.as_tensor(obj, dtype=torch.float32)[None])
        calc = model(torch.arange(data.patterns.shape[1])).clamp_min(0).sqrt()
    meas = data.patterns[0].clamp_min(0).sqrt()
    return float(((calc - meas) ** 2).mean().sqrt() / meas.mean())


def register(obj: np.ndarray, reference: np.ndarray, max_shift: int = 5,
             ) -> tuple[np.ndarray, list[float]]:
    """Remove the integer periodic shift (at most ``max_shift`` px, under half a lattice
    period, or a crystal registers to another repeat) of ``obj [S, N, N]``'s projection from
    ``reference [N, N]``, measured by the shared :func:`slice_shifts` (cross-correlation, sub-
    pixel); returns the object and the shift that aligns it (px, the sub-pixel part reported,
    not removed)."""
    pair = torch.as_tensor(np.stack([reference, obj.sum(0)]), dtype=torch.float64)
    shift = -slice_shifts(pair, reference=0, max_shift=max_shift)[1].numpy()
    rolled = np.roll(obj, tuple(int(round(x)) for x in shift), axis=(1, 2))
    return rolled, [float(x) for x in shift]


def slice_truth(truth: Truth, n_slices: int) -> np.ndarray:
    """The true potential as ``n_slices`` slices ``[S, N, N]`` (V Å) through the cell."""
    pot = truth.array("truth/potential")
    return np.stack([p.sum(0) * truth.voxel_size for p in np.array_split(pot, n_slices)])


def probe_at_first_slice(data: TomoData, n_slices: int) -> np.ndarray:
    """Our initial probe ``[M, M]`` (centred at M // 2), propagated from its defocus plane to
    the first slice as our model does (PtyRAD and py4DSTEM start at the first slice)."""
    model = build_model(data, FPPConfig(n_slices=n_slices))
    with torch.no_grad():
        probe = model.probe()[0]
        entrance = model.propagator.entrance(n_slices)
        if entrance is not None:  # the entrance propagator acts on a centred probe the same
            probe = propagate(probe, entrance)
    return probe.numpy()


def writers(files: dict[str, Any]) -> dict[str, Any]:
    """``run_script``'s file writers: json for a ``.json`` name, npz for a dict of arrays."""
    def write(content: Any, name: str):  # noqa: ANN202
        if name.endswith(".json"):
            return lambda path: path.write_text(json.dumps(content))
        return lambda path: np.savez(path, **content)

    return {name: write(content, name) for name, content in files.items()}


def ptyrad_arrays(data: TomoData, obj: np.ndarray, probe: np.ndarray) -> dict[str, np.ndarray]:
    """PtyRAD's arrays: the object ``obj [S, N, N]`` (V Å) tiled into a pad of ``M // 2`` px
    on each side (``[1, S, N + 2 pad, ...]`` complex), the probe scaled to its orthonormal FFT,
    integer top-left corners of the windows offset by the pad, sub-pixel remainders."""
    m, v = probe.shape[-1], data.voxel_size
    pad = m // 2
    sigma = energy2sigma(data.energy)
    tiled = np.pad(obj, ((0, 0), (pad, pad), (pad, pad)), mode="wrap")
    patterns = data.patterns[0].numpy()
    scale = np.sqrt(patterns.sum((-2, -1)).mean() / (np.abs(probe) ** 2).sum())
    pixels = data.positions[0].numpy() / v
    centre = np.round(pixels)
    return {"measurements": patterns.astype(np.float32),
            "obj": np.exp(1j * sigma * tiled)[None].astype(np.complex64),
            "probe": (probe * scale)[None].astype(np.complex64),
            "crop_pos": (centre - m // 2 + pad).astype(np.int16),
            "probe_pos_shifts": (pixels - centre).astype(np.float32)}


def run_ptyrad(python: str, data: TomoData, cfg: FPPConfig, probe: np.ndarray, iters: int,
               lr: float, check: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """PtyRAD from a zero potential (object only, positivity), ``iters`` iterations in all;
    its forward of ``check`` (V Å) is evaluated first. Returns the run and its cell object."""
    n, m, v = data.volume_shape[1], probe.shape[-1], data.voxel_size
    sigma, pad = energy2sigma(data.energy), m // 2
    spec = {"batch": cfg.batch_size or data.patterns.shape[1], "iters": iters - 1,
            "device": "cpu", "threads": 1, "kv": data.energy / 1e3, "dx": v,
            "dz": float(data.volume_shape[0] * v / cfg.n_slices), "lr_objp": sigma * lr,
            "lr_probe": 0.0, "lr_pos": 0.0, "positivity": cfg.positivity}
    evaluated = run_script(python, RUNNER, writers({
        "spec.json": {**spec, "evaluate": True}, "arrays.npz": ptyrad_arrays(data, check, probe)}))
    with tempfile.TemporaryDirectory() as tmp:
        spec["save"] = str(Path(tmp) / "out.npz")
        zero = np.zeros((cfg.n_slices, n, n))
        result = run_script(python, RUNNER, writers({
            "spec.json": spec, "arrays.npz": ptyrad_arrays(data, zero, probe)}))
        if "error" in result:
            return result, None
        objp = np.load(spec["save"])["objp"][0]
    result["nrmse_of_check"] = evaluated.get("final_nrmse", evaluated.get("error"))
    result["folded"] = fold(objp, data, probe, n) / sigma
    return result, objp[:, pad:pad + n, pad:pad + n] / sigma


def fold(objp: np.ndarray, data: TomoData, probe: np.ndarray, n: int) -> np.ndarray:
    """The padded object ``[S, Np, Np]`` folded onto the periodic cell: every padded pixel is
    a periodic image of a cell pixel; the images are averaged with weights the summed probe
    intensity over the windows (the illumination each pixel received)."""
    m, pad = probe.shape[-1], probe.shape[-1] // 2
    corners = np.round(data.positions[0].numpy() / data.voxel_size).astype(int)
    weight = np.zeros(objp.shape[-2:])
    for c in corners:
        weight[c[0]:c[0] + m, c[1]:c[1] + m] += np.abs(probe) ** 2
    idx = (np.arange(objp.shape[-1]) - pad) % n
    num, den = np.zeros((objp.shape[0], n, n)), np.zeros((n, n))
    np.add.at(den, (idx[:, None], idx[None, :]), weight)
    for s in range(objp.shape[0]):
        np.add.at(num[s], (idx[:, None], idx[None, :]), weight * objp[s])
    return num / np.maximum(den, 1e-30)


def run_py4dstem(python: str, data: TomoData, cfg: FPPConfig, probe: np.ndarray, iters: int,
                 step_size: float, check: np.ndarray) -> tuple[dict, np.ndarray | None]:
    """py4DSTEM (potential object on the cell, which its patches wrap around), probe and
    positions fixed, its gradient descent at ``step_size``; its error of ``check`` first."""
    n, m, v = data.volume_shape[1], probe.shape[-1], data.voxel_size
    sigma = energy2sigma(data.energy)
    k = data.patterns.shape[1]
    side = int(round(np.sqrt(k)))
    patterns = data.patterns[0].numpy().reshape(side, side, m, m).astype(np.float32)
    corner = np.fft.ifftshift(probe)  # py4DSTEM's probes are corner-centred
    scale = np.sqrt(patterns.sum((-2, -1)).mean() / (np.abs(np.fft.fft2(corner)) ** 2).sum())
    spec = {"step": float(data.positions[0, 1, 1] - data.positions[0, 0, 1]),
            "dk": 1.0 / (m * v), "slices": cfg.n_slices,
            "dz": float(data.volume_shape[0] * v / cfg.n_slices), "energy": data.energy,
            "semiangle_mrad": data.semiangle * 1e3, "centre": float(m // 2),
            "batch": cfg.batch_size or k, "iters": iters, "step_size": step_size}
    arrays = {"patterns": patterns, "probe": (corner * scale).astype(np.complex64),
              "positions": data.positions[0].numpy().astype(np.float64)}
    evaluated = run_script(python, PY4DSTEM_SCRIPT, writers({
        "spec.json": {**spec, "evaluate": True},
        "arrays.npz": {**arrays, "obj": (sigma * check).astype(np.float32)}}))
    with tempfile.TemporaryDirectory() as tmp:
        spec["save"] = str(Path(tmp) / "out.npz")
        result = run_script(python, PY4DSTEM_SCRIPT, writers({
            "spec.json": spec,
            "arrays.npz": {**arrays, "obj": np.zeros((cfg.n_slices, n, n), np.float32)}}))
        if "error" in result:
            return result, None
        out = np.load(spec["save"])
        obj, moved = out["obj"], out["positions_px"] - data.positions[0].numpy() / v
    result["error_of_check"] = evaluated.get("own_error", evaluated.get("error"))
    result["position_offset_px"] = [float(x) for x in np.abs(moved).max(0)]
    return result, obj / sigma


def row(tool: str, seconds: float | None, obj: np.ndarray | None, data: TomoData,
        truth: Truth, cfg: dict[str, Any], reference: np.ndarray, note: str = "",
        tilt: Any = (0.0, 0.0), thickness: float | None = None) -> dict[str, Any]:
    """Register and score one tool's cell object; the table row."""
    if obj is None:
        return {"tool": tool, "note": note}
    obj, shift = register(obj, reference)
    s = scores(obj, data.voxel_size, truth, cfg)
    return {"tool": tool, "s_per_iter": seconds, "nrmse": forward_nrmse(data, obj, tilt,
                                                                        thickness),
            "frc": s.get("frc_resolution_A"), "d_sr": s.get("d_sr_tio_pm"),
            "d_o": s.get("d_o_tio_pm"), "shift_px": shift, "note": note}


def table(rows: list[dict[str, Any]], header: str) -> str:
    """The markdown table of ``rows``."""
    def f(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    lines = [header, "", "| tool | s / iteration | NRMSE | FRC 0.5 (Å) | d(Sr–TiO) (pm) | "
             "d(O–TiO) (pm) | shift removed (px) | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shift = ", ".join(f"{s:+.2f}" for s in r.get("shift_px", [])) or "—"
        lines.append(f"| {r['tool']} | {f(r.get('s_per_iter'), '.3f')} | "
                     f"{f(r.get('nrmse'), '.4f')} | {f(r.get('frc'), '.3f')} | "
                     f"{f(r.get('d_sr'), '.2f')} | {f(r.get('d_o'), '.2f')} | {shift} | "
                     f"{r.get('note', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tilt", type=float, default=0.0, help="mistilt along x (mrad)")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--ptyrad", default=None, help="python of a venv with PtyRAD 1.0")
    parser.add_argument("--py4dstem", default=None, help="python of a venv with py4DSTEM 0.14")
    parser.add_argument("--py4dstem-step", type=float, nargs="+", default=[0.5],
                        help="py4DSTEM gradient-descent step sizes (its default 0.5)")
    parser.add_argument("--ptyrad-lr", type=float, nargs="*", default=[],
                        help="extra PtyRAD objp learning rates (rad), e.g. its default 5e-4")
    parser.add_argument("--cache", default=os.environ.get("PTYCHOBENCH_CACHE", "/tmp/cmp/cache"))
    parser.add_argument("--out", default=None, help="write the table here (atomically)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # and each tool's process
    rows, notes = [], []
    cfg = compose(args.tilt, "fpp", args.iters, args.cache)
    ds = job_dataset(cfg)
    truth = Truth(ds)
    noise = section("noise", NoiseConfig, cfg["noise"])
    data = from_dataset(ds, noise, "cpu", kinds={"diffraction"})
    reference = truth.array("truth/potential").sum(0) * truth.voxel_size
    fpp_obj = None
    for name in ("fpp", "app"):
        c = compose(args.tilt, name, args.iters, args.cache)
        variant, params = variant_params(c["algorithm"])
        rec = variant.reconstruct(data, params, int(c["seed"]), False)
        est = rec.estimates()
        obj = np.asarray(est["object_states"])[0]
        fpp_obj = obj if name == "fpp" else fpp_obj
        # the forward model of the fit: fpp's is untilted (its tilt estimate comes from the
        # post-alignment), app's has the learned tilt and thickness
        learned = name == "app"
        rows.append(row(name, rec.seconds_per_iteration, obj, data, truth, cfg, reference,
                        f"R-factor {rec.r_factor:.4f}",
                        est["tilt"] if learned else (0.0, 0.0),
                        float(np.sum(est["slice_thickness"])) if learned else None))
        print(rows[-1], flush=True)
    fpp_cfg = variant_params(cfg["algorithm"])[1]
    probe = probe_at_first_slice(data, fpp_cfg.n_slices)
    true_slices = slice_truth(truth, fpp_cfg.n_slices)
    notes.append(f"our forward of the sliced truth: NRMSE {forward_nrmse(data, true_slices):.4f}"
                 f"; of the fpp object: {forward_nrmse(data, fpp_obj):.4f}")
    if args.ptyrad:
        for lr in [fpp_cfg.object_lr * energy2sigma(data.energy), *args.ptyrad_lr]:
            result, obj = run_ptyrad(args.ptyrad, data, fpp_cfg, probe, args.iters,
                                     lr / energy2sigma(data.energy), true_slices)
            rows.append(row(f"PtyRAD (objp lr {lr:.2g} rad)", result.get("seconds_per_iter"),
                            obj, data, truth, cfg, reference,
                            f"own final NRMSE {result.get('final_nrmse', float('nan')):.4f}"
                            if obj is not None else result.get("error", "")))
            if obj is not None:
                rows.append(row(f"PtyRAD (objp lr {lr:.2g} rad), folded",
                                result["seconds_per_iter"], result["folded"], data, truth, cfg,
                                reference, "padded object folded onto the cell"))
            notes.append(f"PtyRAD lr {lr:.2g}: its forward of the sliced truth: NRMSE "
                         f"{result.get('nrmse_of_check')}")
            print(rows[-1], flush=True)
    if args.py4dstem:
        for step in args.py4dstem_step:
            result, obj = run_py4dstem(args.py4dstem, data, fpp_cfg, probe, args.iters, step,
                                       true_slices)
            rows.append(row(f"py4DSTEM (step {step:g})", result.get("seconds_per_iter"), obj,
                            data, truth, cfg, reference,
                            f"own error {result.get('own_error', float('nan')):.4g}"
                            if obj is not None else result.get("error", "")))
            notes.append(f"py4DSTEM step {step:g}: its error of the sliced truth "
                         f"{result.get('error_of_check')}, first iteration "
                         f"{result.get('error_first')}, positions moved "
                         f"{result.get('position_offset_px')} px")
            print(rows[-1], flush=True)
    header = (f"SrTiO3 ci slab, mistilt {args.tilt:g} mrad, {args.iters} iterations, "
              f"{data.patterns.shape[1]} patterns, one thread per tool, load "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    text = table(rows, header) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    if args.out:
        tmp = f"{args.out}.tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
