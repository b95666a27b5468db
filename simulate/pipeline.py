"""From a config to a stored dataset: build the model, validate, simulate, cache."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from simulate import config as C
from simulate.compute import check_compute
from simulate.errors import ConfigError
from simulate.models import build_model
from simulate.models.registry import coerce_sample
from simulate.store import Dataset, get_dataset
from simulate.tiltseries import TiltSeries, lazy_tilt_series, simulate_tilt_series
from simulate.validate import validate_simulation

SECTIONS: dict[str, type] = {
    "microscope": C.MicroscopeConfig,
    "potential": C.PotentialConfig,
    "method": C.MethodConfig,
    "scan": C.ScanConfig,
    "detector": C.DetectorConfig,
    "tilts": C.TiltConfig,
    "phonons": C.PhononConfig,
    "truth": C.TruthConfig,
}


def section(name: str, schema: type, data: Any) -> Any:
    """The dataclass ``schema`` from a mapping, refusing unknown keys by name (``name.key``)."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return data
    data = dict(data or {})
    allowed = {f.name for f in dataclasses.fields(schema)}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"{name}.{key}", value, f"a key of {sorted(allowed)}")
    return schema(**data)


def simulation_config(data: Mapping[str, Any] | C.SimulationConfig) -> C.SimulationConfig:
    """A :class:`SimulationConfig` from a plain mapping, rejecting unknown keys by name."""
    if isinstance(data, C.SimulationConfig):
        return dataclasses.replace(data, sample=coerce_sample(data.sample))
    data = dict(data)
    for key in data:
        if key != "sample" and key not in SECTIONS:
            raise ConfigError(key, data[key], f"a key of {sorted(['sample', *SECTIONS])}")
    sections = {k: section(k, s, data.get(k)) for k, s in SECTIONS.items()}
    return C.SimulationConfig(sample=coerce_sample(data.get("sample") or {}), **sections)


def prepare(cfg: C.SimulationConfig) -> Atoms:
    """Build the model and validate the whole config against it; no abTEM work yet."""
    atoms = build_model(cfg.sample)
    validate_simulation(cfg, np.diag(atoms.cell.array))
    return atoms


def run_simulation(cfg: C.SimulationConfig, progress: bool = True,
                   atoms: Atoms | None = None, lazy: bool = False) -> tuple[TiltSeries, Atoms]:
    """Simulate the tilt series of ``cfg`` with abTEM (validating and building the model
    first, unless the model built by :func:`prepare` is passed as ``atoms``); with ``lazy``
    its measurements are dask graphs, which :func:`simulate.store.write_dataset` computes."""
    atoms = prepare(cfg) if atoms is None else atoms
    if lazy:
        return lazy_tilt_series(atoms, cfg), atoms
    return simulate_tilt_series(atoms, cfg, progress=progress), atoms


def load_dataset(
    cfg: Mapping[str, Any] | C.SimulationConfig,
    cache_dir: str | Path,
    progress: bool = True,
    atoms: Atoms | None = None,
    compute: C.ComputeConfig | None = None,
) -> Dataset:
    """The dataset of ``cfg`` from the cache, simulated once if needed (with a progress bar
    when ``progress``) where ``compute`` says (:mod:`simulate.compute`; default here, one tilt
    after another). Validates first, building the model, unless ``atoms`` is the model
    that :func:`prepare` already built and validated for ``cfg`` (then it is built once)."""
    sim = simulation_config(cfg)
    compute = compute or C.ComputeConfig()
    check_compute(compute)
    atoms = prepare(sim) if atoms is None else atoms
    simulate = functools.partial(run_simulation, progress=progress, atoms=atoms, lazy=True)
    return get_dataset(sim, cache_dir, simulate, compute=compute, progress=progress)
