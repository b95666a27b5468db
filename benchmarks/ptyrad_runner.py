"""Time PtyRAD 1.0's ``PtychoModel`` on arrays written by ``bench_multislice.py --ptyrad``.

Runs under the interpreter of a separate virtual environment that has PtyRAD (it does not import
this repository)::

    /tmp/ptyradvenv/bin/python benchmarks/ptyrad_runner.py SPEC.json ARRAYS.npz

``SPEC.json``: ``batch``, ``iters``, ``threads``, ``device``, ``kv``, ``dx`` [Å], ``dz`` [Å],
the learning rates ``lr_objp`` [rad], ``lr_probe``, ``lr_pos`` [px], optionally ``chunk``
(PtyRAD mini-batches of ``chunk`` patterns, ``grad_accumulation = batch / chunk``) and
``profile``. ``ARRAYS.npz``:
``measurements [K, M, M]`` (centred patterns), ``obj [1, S, N, N]`` complex (initial object),
``probe [P, M, M]`` complex (initial modes, scaled so that PtyRAD's orthonormal FFT reproduces
the patterns' scale), ``crop_pos [K, 2]`` (integer top-left corners of the probe window, px) and
``probe_pos_shifts [K, 2]`` (sub-pixel remainders, px). A learning rate of 0 leaves its tensor
out of the optimiser and without gradients. Optional (``benchmarks/compare_tools.py``):
``"positivity": true`` turns on PtyRAD's ``objp_postiv`` (clip the phase at 0 after each update,
as our ``positivity``); ``"save": PATH`` writes the final ``objp``, ``obja`` ``[1, S, N, N]`` and
``probe`` to an npz (atomically); ``"evaluate": true`` runs no iteration and only prints
``final_nrmse`` of the initial arrays (PtyRAD's forward of a given object against the patterns).

The model is built the way PtyRAD builds it after its ``Initializer`` (``PtychoModel(
init_variables, model_params, device)``), with PtyRAD's propagator ``near_field_evolution``,
its ``CombinedLoss`` (``loss_single``, NRMSE of the square-root patterns: an amplitude loss),
its ``create_optimizer`` (Adam over ``objp``, ``probe``, ``probe_pos_shifts``; the object is a
phase object like ours, so ``obja`` stays fixed), its random ``make_batches`` and its
``recon_step`` (one pass over all batches). The ``Initializer`` itself is bypassed because its
preprocessing (pattern normalisation, probe normalisation, random position jitter) would change
the arrays. Off: every default constraint (``ortho_pmode``, ``fix_probe_int``, ...),
``torch.compile`` (PtyRAD's default), saving, figures, the convergence monitor and logging.
The device is passed straight to the model (no ``set_gpu_device``).

Prints one JSON line: ``seconds_per_iter`` (mean over the timed iterations; one warm-up
iteration excluded), ``iter_times`` (PtyRAD's own per-iteration clock), ``final_nrmse`` (the
last iteration's ``loss_single``, mean over its batches), ``constraints_off`` and
``batch_sizes``. With ``"profile": true`` in the spec the timed iterations run under
``torch.profiler`` and ``profile`` holds ``ops`` (aten op -> [self CPU seconds, calls, seconds
in the backward], outside the optimiser step) and ``optimizer_s`` (the aten self time inside
``Optimizer.step``).
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import torch

# torchvision::<name> operators whose fake (meta) kernels torchvision registers unconditionally
# at import; a torchvision wheel built for CUDA lacks them next to a CPU torch
# ("operator torchvision::nms does not exist"). PtyRAD only uses torchvision's pure-Python
# gaussian_blur, so declaring the schemas (without kernels) is enough to import it.
TORCHVISION_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def declare_missing_torchvision_ops() -> list[str]:
    """Declare the torchvision operator schemas that the loaded torch does not know."""
    declared = []
    for name, schema in TORCHVISION_SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            torch.library.define(f"torchvision::{name}", schema)
            declared.append(name)
    return declared


def profile_ops(prof) -> dict:  # noqa: ANN001
    """Self CPU time per aten op of a finished ``torch.profiler.profile``: ``ops`` maps an op to
    [seconds, calls, seconds inside an autograd backward node]; the ops called inside an
    optimiser step are summed apart (``optimizer_s``)."""
    ops: dict[str, list] = {}
    optimizer = 0.0
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        names = []
        parent = e.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        seconds = e.self_cpu_time_total / 1e6
        if any(n.startswith("Optimizer.step") for n in names):
            optimizer += seconds
            continue
        entry = ops.setdefault(e.name, [0.0, 0, 0.0])
        entry[0] += seconds
        entry[1] += 1
        if any("Backward" in n for n in names):
            entry[2] += seconds
    return {"ops": ops, "optimizer_s": optimizer}


def save(path: str, model) -> None:  # noqa: ANN001
    """Write the model's ``objp``, ``obja`` and ``probe`` to the npz ``path`` atomically."""
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, objp=model.opt_objp.detach().cpu().numpy(),
             obja=model.opt_obja.detach().cpu().numpy(),
             probe=model.get_complex_probe_view().detach().cpu().numpy())
    os.replace(tmp, path)


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    arrays = np.load(sys.argv[2])
    torch.set_num_threads(int(spec["threads"]))
    declared = declare_missing_torchvision_ops()

    from ptyrad.core import CombinedConstraint, CombinedLoss, PtychoModel
    from ptyrad.optics.constants import get_wavelength_ang
    from ptyrad.optics.propagator import near_field_evolution
    from ptyrad.params import ConstraintParams, LossParams, ModelParams
    from ptyrad.solver.reconstruction import (
        compute_loss,
        create_optimizer,
        make_batches,
        recon_step,
        time_sync,
        toggle_grad_requires,
    )

    logging.getLogger("ptyrad").setLevel(logging.WARNING)
    device = spec["device"]
    measurements = arrays["measurements"].astype(np.float32)
    probe = arrays["probe"].astype(np.complex64)
    crop_pos = arrays["crop_pos"].astype(np.int16)
    shifts = arrays["probe_pos_shifts"].astype(np.float32)
    n, m = measurements.shape[0], probe.shape[-1]
    lambd = float(get_wavelength_ang(spec["kv"]))
    fast = int(np.ceil(np.sqrt(n)))
    init_variables = {
        "measurements": measurements,
        "obj": arrays["obj"].astype(np.complex64),
        "obj_tilts": np.zeros((1, 2), np.float32),
        "slice_thickness": float(spec["dz"]),
        "probe": probe,
        "probe_pos_shifts": shifts,
        "crop_pos": crop_pos,
        "omode_occu": np.ones(1, np.float32),
        "H": near_field_evolution((m, m), spec["dx"], spec["dz"], lambd).astype(np.complex64),
        "N_scan_slow": int(np.ceil(n / fast)),
        "N_scan_fast": fast,
        "dx": float(spec["dx"]),
        "dk": 1.0 / (spec["dx"] * m),
        "lambd": lambd,
        "random_seed": 0,
        "length_unit": "Ang",
        "scan_affine": None,
        "meas_Npix": m,
        "simu_Npix": m,
        "simu_match_mode": None,
        "recon_provenance": [],
    }
    off = {"start_iter": None, "lr": 0.0}

    def learn(lr: float) -> dict:
        return {"start_iter": 1 if lr else None, "lr": lr}

    model_params = ModelParams(
        detector_blur_std=None,
        preload_data=True,
        optimizer_params={"name": "Adam", "configs": {}},
        update_params={
            "obja": off,
            "objp": learn(spec["lr_objp"]),
            "obj_tilts": off,
            "slice_thickness": off,
            "probe": learn(spec["lr_probe"]),
            "probe_pos_shifts": learn(spec["lr_pos"]),
        },
    ).model_dump()
    loss_params = LossParams(loss_single={"state": True, "weight": 1.0, "dp_pow": 0.5}).model_dump()
    constraint_params = ConstraintParams().model_dump()
    constraints_off = sorted(k for k, v in constraint_params.items() if v.get("start_iter"))
    for v in constraint_params.values():
        v["start_iter"] = None
    if spec.get("positivity"):
        constraint_params["objp_postiv"]["start_iter"] = 1

    model = PtychoModel(init_variables, model_params, device=device)
    optimizer = create_optimizer(model.optimizer_params, model.optimizable_params)
    loss_fn = CombinedLoss(loss_params, device=device)
    constraint_fn = CombinedConstraint(constraint_params, device=device)
    positions = (model.crop_pos + model.opt_probe_pos_shifts).detach().cpu().numpy()
    # optional: mini-batches of ``chunk`` whose gradients accumulate over batch / chunk of them
    # before each update (PtyRAD's grad_accumulation; the analogue of our chunk_size)
    # (a batch larger than the data is the whole data, one batch)
    batch = min(spec["batch"], n)
    size = min(spec.get("chunk") or batch, batch)
    accumulate = max(batch // size, 1)
    batches = make_batches(np.arange(n), positions, size, mode="random", seed=0)
    batches = [torch.from_numpy(b).to(device) for b in batches]

    def iteration(niter: int) -> dict:
        toggle_grad_requires(model, niter)
        return recon_step(batches, accumulate, model, optimizer, None, loss_fn, constraint_fn,
                          niter, compute_loss_fn=compute_loss)

    if spec.get("evaluate"):
        with torch.no_grad():
            _, losses = compute_loss(torch.arange(n, device=device), model, model,
                                     model.get_measurements(torch.arange(n)), loss_fn)
        print(json.dumps({"final_nrmse": float(losses[0])}))  # [0]: loss_single
        return
    iteration(1)  # warm-up, not timed
    profiler = None
    if spec.get("profile"):
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU])
        profiler.__enter__()
    start = time_sync(device)
    for niter in range(2, spec["iters"] + 2):
        losses = iteration(niter)
    seconds = (time_sync(device) - start) / spec["iters"]
    extra = {}
    if spec.get("save"):
        save(spec["save"], model)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        extra["profile"] = profile_ops(profiler)
    print(json.dumps({
        "seconds_per_iter": seconds,
        "iter_times": model.iter_times[1:],
        "final_nrmse": float(np.mean(losses["loss_single"])),
        "constraints_off": constraints_off,
        "batch_sizes": sorted({len(b) for b in batches}),
        "grad_accumulation": accumulate,
        "torchvision_ops_declared": declared,
        "threads": torch.get_num_threads(),
        **extra,
    }))


if __name__ == "__main__":
    main()
