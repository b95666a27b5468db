"""The ``ptychobench`` Hydra app. Only ``experiments/`` imports hydra."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.figures import dataset_overview, save_figure
from experiments.job import job_compute, run_benchmark
from experiments.schema import (
    DEVICES,
    TASKS,
    AppConfig,
    DeviceConfig,
    OutputConfig,
    register_configs,
)
from simulate.config import NoiseConfig
from simulate.errors import ConfigError
from simulate.fileio import atomic_write, atomic_write_json
from simulate.pipeline import SECTIONS, load_dataset, prepare, section, simulation_config
from simulate.provenance import provenance
from simulate.store import cache_key
from simulate.validate import validate_noise

register_configs()


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if name not in DEVICES:
        raise ConfigError("device.name", name, f"one of {DEVICES}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device.name", name, "cpu or auto: no CUDA device is available")
    return (
        "cuda"
        if name == "auto" and torch.cuda.is_available()
        else ("cpu" if name == "auto" else name)
    )


def run_job(cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """``task=benchmark``: simulate → reconstruct → score (:func:`run_benchmark`);
    ``task=simulate``: the dataset only, with its summary and figure."""
    allowed = {f.name for f in dataclasses.fields(AppConfig)}
    for key in cfg:
        if key not in allowed:
            raise ConfigError(key, cfg[key], f"a key of {sorted(allowed)}")
    section("device", DeviceConfig, cfg["device"])
    job_compute(cfg)
    section("output", OutputConfig, cfg["output"])
    if cfg["task"] not in TASKS:
        raise ConfigError("task", cfg["task"], f"one of {TASKS}")
    if cfg["task"] == "benchmark":
        import torch

        return run_benchmark(cfg, out_dir, torch.device(resolve_device(cfg["device"]["name"])))
    return simulate_job(cfg, out_dir)


def simulate_job(cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Simulate (cached) the configured tilt series and write summary, provenance and figure."""
    sim = simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)})
    noise = section("noise", NoiseConfig, cfg["noise"])
    validate_noise(noise)
    device = resolve_device(cfg["device"]["name"])
    atoms = prepare(sim)
    t0 = time.perf_counter()
    compute = job_compute(cfg)
    ds = load_dataset(sim, cfg["cache_dir"], progress=bool(cfg["progress"]), atoms=atoms,
                      compute=compute)
    elapsed = time.perf_counter() - t0
    kind = "diffraction" if ds.has_diffraction else "haadf"  # HAADF-only series (pixelated=false)
    data = ds.measurements(noise, kind=kind)
    summary = {
        "preset": cfg["preset"],
        "sample": sim.sample.name,
        "n_atoms": len(atoms),
        "species": {
            str(s): int(n)
            for s, n in zip(
                *np.unique(atoms.get_chemical_symbols(), return_counts=True), strict=True
            )
        },
        "dataset": str(ds.path),
        "cache_key": cache_key(sim),
        "load_or_simulate_s": round(elapsed, 3),
        "measurement": kind,
        f"{kind}_shape": list(data.shape),
        "haadf": ds.has_haadf,
        "device": device,
        "compute": compute.name,
        "dose": noise.dose,
        "dose_per": noise.per,
        "mean_counts_per_pattern": float(data.sum((-1, -2)).mean())
        if kind == "diffraction"
        else float(data.mean()),
        "angular_sampling_mrad": ds.meta["angular_sampling_mrad"],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "provenance.json", provenance(cfg) | {"dataset_key": ds.key})
    if cfg["output"]["figures"]:
        save_figure(
            dataset_overview(
                ds, data if kind == "diffraction" else None, cfg["output"]["n_patterns"]
            ),
            out_dir / "dataset.png",
        )
    return summary


def record_failure(out_dir: Path, cfg: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """Write ``metrics.json`` of a job that raised (``status: failed``, the reason) and its
    traceback to ``error.txt``, so that the sweep's table lists it."""
    import traceback

    reason = f"{type(exc).__name__}: {exc}"
    text = "".join(traceback.format_exception(exc))
    atomic_write(out_dir / "error.txt", lambda p: p.write_text(text))
    record = {"status": "failed", "error": reason, "score_keys": ["status", "error"],
              "algorithm": (cfg.get("algorithm") or {}).get("name")}
    atomic_write_json(out_dir / "metrics.json", record)
    atomic_write_json(out_dir / "provenance.json", provenance(cfg))
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of the ``ptychobench`` console script. In a multirun a job that raises is
    recorded as failed and the sweep goes on (its table lists the failure and the command exits
    non-zero); a single job that raises exits non-zero with the error."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        summary = run_job(resolved, out_dir)
    except Exception as exc:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        summary = record_failure(out_dir, resolved, exc)
        print(f"job {hydra_cfg.job.override_dirname or out_dir.name} failed: "
              f"{summary['error']}", file=sys.stderr)
    for key, value in summary.items():
        if not isinstance(value, dict | list):
            print(f"{key:>26}: {value}")
    return summary


if __name__ == "__main__":
    main()
