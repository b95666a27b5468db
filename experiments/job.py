"""One benchmark job: simulate (cached) → reconstruct → trace → score → write results.

Writes into the job directory: ``metrics.json``, ``volume.npy`` (the reconstruction
``[z, x, y]``), ``loss.png``, ``histogram.png``, ``slab.png``, ``fsc.png`` and
``provenance.json``. A job whose ``metrics.json`` exists is skipped unless ``rerun``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import reconstruct.variants  # noqa: F401  (registers the variants)
from experiments.figures import loss_figure, save_figure
from experiments.scoring import ScoringConfig, score_volume
from metrics import fourier_shell_correlation
from metrics.figures import plot_fsc, plot_intensity_histogram, plot_slab_overlay
from reconstruct.loop import DivergenceError
from reconstruct.variants.base import TomoData, Variant, VariantConfigError, variant_params
from simulate.config import NoiseConfig, SimulationConfig
from simulate.errors import ConfigError
from simulate.fileio import atomic_write, atomic_write_json
from simulate.noise import electrons_per_position
from simulate.pipeline import SECTIONS, load_dataset, prepare, simulation_config
from simulate.provenance import provenance
from simulate.store import Dataset
from simulate.validate import validate_noise


def check_requirements(variant: Variant, sim: SimulationConfig) -> None:
    """Refuse a variant whose measurements the simulation does not record."""
    if variant.requires == "haadf" and not sim.detector.adf:
        raise ConfigError("detector.adf", sim.detector.adf,
                          f"true: algorithm '{variant.name}' reconstructs from the ADF series")
    if variant.requires == "diffraction" and not sim.detector.pixelated:
        raise ConfigError("detector.pixelated", sim.detector.pixelated,
                          f"true: algorithm '{variant.name}' needs 4D-STEM patterns")


def _crop(patterns: np.ndarray, n: int) -> np.ndarray:
    """Crop fftshifted ``[..., k, k]`` patterns to ``n × n`` keeping k = 0 at index n // 2."""
    k = patterns.shape[-1]
    a = k // 2 - n // 2
    return patterns[..., a:a + n, a:a + n]


def tomo_data(ds: Dataset, noise: NoiseConfig, device: torch.device, realisation: int = 0,
              kinds: tuple[str, ...] = ("diffraction", "haadf")) -> TomoData:
    """Noisy measurements and nominal geometry of ``ds`` on ``device`` (see :class:`TomoData`)."""
    meta, t = ds.meta, ds.n_tilts
    pot_shape = tuple(ds.group["truth/potential"].shape)
    v = float(meta["voxel_size_A"])
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    m = meta
    data = TomoData(
        volume_shape=pot_shape, voxel_size=v,
        euler=as_t(np.deg2rad(ds.array("geometry/euler_nominal_deg"))),
        shifts=torch.zeros(t, 2, device=device), energy=float(m["energy_eV"]),
        semiangle=float(m["semiangle_mrad"]) * 1e-3,
        aberrations={"C10": -float(m["defocus_A"]), **dict(m["aberrations"] or {})},
        electrons_per_position=electrons_per_position(noise, t, tuple(m["scan_step_A"])),
    )
    nominal = ds.array("geometry/positions_nominal")
    if "diffraction" in kinds and ds.has_diffraction:
        if not math.isclose(m["reciprocal_sampling_invA"][0] * pot_shape[1] * v, 1.0, rel_tol=1e-6):
            raise ValueError("detector sampling is not 1 / (cell extent): cannot crop to the grid")
        raw = ds.measurements(noise, realisation, "diffraction")
        n = min(raw.shape[-1], pot_shape[1])
        pats = _crop(raw.reshape(t, -1, *raw.shape[-2:]), n)
        scale = 1.0 if math.isinf(data.electrons_per_position) else data.electrons_per_position
        data.patterns = as_t(pats / scale)
        data.positions = as_t(nominal)
        data.pattern_mask = torch.ones(n, n, dtype=torch.bool, device=device)
    if "haadf" in kinds and ds.has_haadf:
        data.haadf = as_t(ds.measurements(noise, realisation, "haadf"))
        data.haadf_positions = as_t(nominal)
    return data


def score_or_fail(vol: np.ndarray, error: str | None, ds: Dataset, cfg: dict) -> dict[str, Any]:
    """Score ``vol [z, x, y]`` against the truth of ``ds`` with ``cfg["scoring"]``, or report
    the failure (an error, or a volume holding NaN/inf) without scoring."""
    if error is not None:
        return {"status": "failed", "error": error}
    if not np.all(np.isfinite(vol)):
        return {"status": "failed", "error": "the reconstruction holds NaN or inf"}
    scoring = ScoringConfig(**cfg["scoring"])
    out = score_volume(vol, ds.meta["voxel_size_A"], np.asarray(ds.meta["origin_xyz_A"]),
                       ds.array("truth/positions"), ds.array("truth/numbers"),
                       ds.array("truth/potential"), scoring)
    return {"status": "ok", **out}


def score_figures(out_dir: Path, vol: np.ndarray, result: dict, ds: Dataset) -> None:
    """Traced-intensity histogram, slab overlay and FSC figures of a scored volume."""
    if result["status"] != "ok":
        return
    traced = result["traced"]
    v, origin = ds.meta["voxel_size_A"], ds.meta["origin_xyz_A"]
    truth_pos, truth_z = ds.array("truth/positions"), ds.array("truth/numbers")
    names = {0: "non-atom"} | {int(z): s for z, s in _symbols(truth_z).items()}
    if traced["intensities"]:
        save_figure(plot_intensity_histogram(traced["intensities"], traced["labels"], names),
                    out_dir / "histogram.png")
    save_figure(plot_slab_overlay(vol, v, origin, np.asarray(traced["positions"]).reshape(-1, 3),
                                  truth_pos, traced["labels"], truth_z),
                out_dir / "slab.png")
    fsc = fourier_shell_correlation(vol, ds.array("truth/potential"), v)
    save_figure(plot_fsc(fsc, ["against the true potential"], (0.5,)), out_dir / "fsc.png")


def _symbols(numbers: np.ndarray) -> dict[int, str]:
    from ase.data import chemical_symbols

    return {int(z): chemical_symbols[int(z)] for z in np.unique(numbers)}


def run_benchmark(cfg: dict[str, Any], out_dir: Path, device: torch.device) -> dict[str, Any]:
    """The whole job; returns the metrics record (also written to ``metrics.json``)."""
    done = out_dir / "metrics.json"
    if done.is_file() and not cfg.get("rerun", False):
        return json.loads(done.read_text()) | {"skipped": True}
    sim = simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)})
    noise = NoiseConfig(**cfg["noise"])
    validate_noise(noise)
    variant, params = variant_params(cfg["algorithm"])
    check_requirements(variant, sim)
    prepare(sim)
    ds = load_dataset(sim, cfg["cache_dir"], progress=bool(cfg["progress"]))
    data = tomo_data(ds, noise, device, kinds=(variant.requires,))
    t0, error, rec = time.perf_counter(), None, None
    try:
        rec = variant.run(data, params, int(cfg["seed"]), bool(cfg["progress"]))
    except DivergenceError as exc:
        error = f"diverged: {exc}"
        rec = _failed(data, exc)
    vol = rec.volume.detach().cpu().numpy()
    result = score_or_fail(vol, error, ds, cfg)
    result |= {"algorithm": variant.name, "dataset_key": ds.key, "device": str(device),
               "seconds_total": time.perf_counter() - t0,
               "seconds_per_iteration": rec.seconds_per_iteration,
               "iterations": len(rec.history.loss),
               "final_loss": rec.history.loss[-1] if rec.history.loss else None,
               "loss_history": list(rec.history.loss)}
    atomic_write(out_dir / "volume.npy", lambda p: np.save(p, vol))
    save_figure(loss_figure(rec.history.loss), out_dir / "loss.png")
    score_figures(out_dir, vol, result, ds)
    atomic_write_json(out_dir / "provenance.json", provenance(cfg) | {"dataset_key": ds.key})
    record = {k: v for k, v in result.items() if k != "traced"}
    atomic_write_json(done, record)
    return record


def _failed(data: TomoData, exc: DivergenceError) -> Any:
    from reconstruct.variants.base import Reconstruction

    nan = torch.full(data.volume_shape, float("nan"), device=data.device)
    return Reconstruction(volume=nan, history=exc.history, seconds_per_iteration=float("nan"))


__all__ = ["run_benchmark", "tomo_data", "check_requirements", "VariantConfigError"]
