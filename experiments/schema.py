"""Structured-config schema of the ``ptychobench`` app, registered with Hydra's ConfigStore."""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from experiments.scoring import ScoringConfig
from reconstruct.variants import PLUGIN_VARIANTS, VARIANTS
from simulate import config as C
from simulate.models import MODELS

CONF = Path(__file__).resolve().parents[1] / "conf"
DEVICES = ("auto", "cpu", "cuda")
TASKS = ("benchmark", "simulate")


@dataclass
class DeviceConfig:
    """Where torch code runs: ``auto`` takes CUDA when available."""

    name: str = "auto"


@dataclass
class OutputConfig:
    """What the job writes besides its results."""

    n_patterns: int = 4
    figures: bool = True


@dataclass
class AppConfig:
    """The whole app: simulation sections, noise, device, preset and cache location."""

    sample: Any = None
    algorithm: Any = None
    microscope: C.MicroscopeConfig = field(default_factory=C.MicroscopeConfig)
    potential: C.PotentialConfig = field(default_factory=C.PotentialConfig)
    method: C.MethodConfig = field(default_factory=C.MethodConfig)
    scan: C.ScanConfig = field(default_factory=C.ScanConfig)
    detector: C.DetectorConfig = field(default_factory=C.DetectorConfig)
    tilts: C.TiltConfig = field(default_factory=C.TiltConfig)
    phonons: C.PhononConfig = field(default_factory=C.PhononConfig)
    truth: C.TruthConfig = field(default_factory=C.TruthConfig)
    noise: C.NoiseConfig = field(default_factory=C.NoiseConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    compute: C.ComputeConfig = field(default_factory=C.ComputeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    task: str = "benchmark"
    seed: int = 0
    rerun: bool = False
    preset: str = "custom"
    cache_dir: str = "${oc.env:PTYCHOBENCH_CACHE,'~/.cache/ptychobench'}"
    dataset: str | None = None  # a stored dataset (path, or key in cache_dir), not a simulation
    progress: bool = True


# do not change a job's result; `hydra/...` picks e.g. the launcher, so that a sweep resumes on
# another one
SWEEP_EXCLUDED = ("rerun", "progress", "hydra.", "hydra/", "compute")


def sweep_name(overrides: list[str] | None = None) -> str:
    """A sweep directory name from the command's overrides (default: the command line), so that
    re-running the same command resumes the same sweep: the overrides that change results,
    sorted and joined; long ones are shortened with a digest of the whole.

    As the ``ptychobench_sweep`` resolver it is evaluated once, in the launching process (the
    sweeper names the sweep directory before any job starts), and cached (as Hydra's ``now``):
    Hydra copies that cache into every job's config, in the worker processes of the joblib and
    submitit launchers too, so every job of the sweep gets the same directory."""
    args = sys.argv[1:] if overrides is None else overrides
    kept = sorted(o for o in args if "=" in o and not o.startswith("-")
                  and not o.lstrip("+~").startswith(SWEEP_EXCLUDED))
    text = re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(kept)) or "default"
    if len(text) > 80:
        text = f"{text[:60]}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
    return text


def register_configs() -> None:
    """Register the app schema, one schema per sample model and variant, and the
    ``ptychobench_sweep`` resolver of the sweep directory."""
    if not OmegaConf.has_resolver("ptychobench_sweep"):
        OmegaConf.register_new_resolver("ptychobench_sweep", sweep_name, use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="ptychobench_schema", node=AppConfig)
    for name, (schema, _) in MODELS.items():
        cs.store(group="sample", name=f"{name}_schema", node=schema)
    for name, variant in VARIANTS.items():
        cs.store(group="algorithm", name=f"{name}_schema", node=variant.schema)
        if name in PLUGIN_VARIANTS and not (CONF / "algorithm" / f"{name}.yaml").is_file():
            cs.store(group="algorithm", name=name, node=variant.schema)  # its schema defaults
