"""One benchmark job: simulate (cached) → reconstruct → score every estimate → write results.

Writes into the job directory: ``metrics.json`` (the run and every applicable scorer's
metrics), ``estimates.npz`` (every named estimate but the volume) and ``volume.npy`` (when the
method estimates one), ``loss.png``, the scorers' figures (e.g. ``histogram.png``,
``slab.png``, ``fsc.png``) and ``provenance.json``. A job whose ``metrics.json`` exists is
skipped unless ``rerun``. Nothing here knows a particular method or estimate kind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

import reconstruct.variants  # noqa: F401  (registers the variants)
from experiments.figures import loss_figure, save_figure
from experiments.halfsets import check_half_sets, half_datasets, score_half_sets
from experiments.scoring import ScoringConfig, Truth, public, score_figures, score_or_fail
from reconstruct.data import MEASUREMENT_KEYS, from_dataset
from reconstruct.distributed import process_group, world
from reconstruct.loop import DivergenceError
from reconstruct.result import Reconstruction, save_estimates
from reconstruct.variants.base import Variant, variant_params
from simulate.compute import check_compute
from simulate.config import ComputeConfig, NoiseConfig, SimulationConfig
from simulate.errors import ConfigError
from simulate.fileio import atomic_write_json
from simulate.pipeline import SECTIONS, load_dataset, prepare, section, simulation_config
from simulate.provenance import provenance
from simulate.store import Dataset, open_dataset
from simulate.validate import validate_noise


def check_requirements(variant: Variant, sim: SimulationConfig | None = None,
                       ds: Dataset | None = None) -> None:
    """Refuse a variant whose measurement kinds the simulation (or the stored dataset) does
    not record."""
    if ds is not None:
        recorded = {"diffraction": ds.has_diffraction, "haadf": ds.has_haadf}
    else:
        recorded = {"diffraction": sim.detector.pixelated, "haadf": sim.detector.adf}
    for kind in sorted(variant.requires):
        if not recorded[kind]:
            key = "dataset" if ds is not None else MEASUREMENT_KEYS[kind]
            raise ConfigError(key, str(ds.path) if ds is not None else False,
                              f"{'a dataset with' if ds is not None else 'true:'} {kind} "
                              f"measurements: algorithm '{variant.name}' needs them")


def job_dataset(cfg: dict[str, Any], variant: Variant | None = None) -> Dataset:
    """The job's dataset: the stored one named by ``dataset``, else the simulation of the
    config (validated, the model built once, cached); refused before compute."""
    if cfg.get("dataset"):
        ds = open_dataset(cfg["dataset"], cfg["cache_dir"])
        if variant is not None:
            check_requirements(variant, ds=ds)
        return ds
    sim = simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)})
    if variant is not None:
        check_requirements(variant, sim)
    atoms = prepare(sim)  # the model is built once per job, and validated before any compute
    return load_dataset(sim, cfg["cache_dir"], progress=bool(cfg["progress"]), atoms=atoms,
                        compute=job_compute(cfg))


def job_compute(cfg: dict[str, Any]) -> ComputeConfig:
    """The job's ``compute`` section, validated (refused by key before any compute)."""
    compute = section("compute", ComputeConfig, cfg.get("compute"))
    check_compute(compute)
    return compute


def run_record(variant: Variant, rec: Reconstruction, seconds: float) -> dict[str, Any]:
    """What a job records of the run itself (kept when the job is re-scored)."""
    loss = list(rec.history.loss)
    return {"algorithm": variant.name, "seconds_total": seconds,
            "seconds_per_iteration": rec.seconds_per_iteration, "iterations": len(loss),
            "final_loss": loss[-1] if loss else None, "loss_history": loss,
            "info": {k: v for k, v in rec.info.items() if k != "final_loss"}}


def reconstruct(variant: Variant, data: Any, params: Any, cfg: dict[str, Any],
                ) -> tuple[Reconstruction, str | None]:
    """The variant's reconstruction, or the history of one that diverged and why."""
    try:
        return variant.reconstruct(data, params, int(cfg["seed"]), bool(cfg["progress"])), None
    except DivergenceError as exc:
        return Reconstruction(history=exc.history), f"diverged: {exc}"


def run_benchmark(cfg: dict[str, Any], out_dir: Path, device: torch.device) -> dict[str, Any]:
    """The whole job; returns the metrics record (also written to ``metrics.json``)."""
    done = out_dir / "metrics.json"
    if done.is_file() and not cfg.get("rerun", False):
        return json.loads(done.read_text()) | {"skipped": True}
    noise = section("noise", NoiseConfig, cfg["noise"])
    validate_noise(noise)
    scoring = section("scoring", ScoringConfig, cfg["scoring"])
    check_half_sets(scoring, noise)
    variant, params = variant_params(cfg["algorithm"])
    compute = job_compute(cfg)
    if compute.ddp and scoring.half_sets != "none":
        raise ConfigError("scoring.half_sets", scoring.half_sets, "none with compute.ddp=true")
    if compute.max_memory_gb is not None and scoring.half_sets == "subsample":
        raise ConfigError("scoring.half_sets", scoring.half_sets,
                          "none or poisson with compute.max_memory_gb (subsampling the scan "
                          "needs the patterns in memory)")
    ds = job_dataset(cfg, variant)
    t0 = time.perf_counter()
    with process_group(compute.ddp, device.type) as where:
        device = torch.device(where)
        data = from_dataset(ds, noise, device, kinds=variant.requires,
                            max_memory_gb=compute.max_memory_gb)
        rec, error = reconstruct(variant, data, params, cfg)
        rank = world()[0]
    if rank != 0:  # rank 0 scores and writes; the others only shared the reconstruction
        return {"status": "ok", "rank": rank}
    estimates = rec.estimates()
    if estimates:  # saved before scoring: a scorer's failure never loses the reconstruction
        save_estimates(out_dir / "estimates.npz", estimates)
    truth = Truth(ds)
    result = score_or_fail(estimates, error, truth, scoring)
    if scoring.half_sets != "none" and result["status"] == "ok":
        halves = half_datasets(ds, noise, device, variant.requires, scoring, data,
                               compute.max_memory_gb)
        first = estimates.get("volume") if scoring.half_sets == "poisson" else None
        result |= score_half_sets(variant, params, halves, truth, int(cfg["seed"]), out_dir,
                                  first)
    record = public(run_record(variant, rec, time.perf_counter() - t0) | result
                    | {"dataset_key": ds.key, "device": str(device)})
    save_figure(loss_figure(rec.history.loss), out_dir / "loss.png")
    score_figures(out_dir, estimates, result, truth)
    atomic_write_json(out_dir / "provenance.json", provenance(cfg) | {"dataset_key": ds.key})
    atomic_write_json(done, record)
    return record


__all__ = ["run_benchmark", "check_requirements", "run_record"]
