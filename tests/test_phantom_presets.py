"""Every phantom's presets compose at every scale and simulate through the app, and each
dataset carries its builder's truth (builders: test_models_phantoms.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulate.pipeline import SECTIONS, prepare, simulation_config

CONF = Path(__file__).resolve().parents[1] / "conf"
PHANTOMS = "ptal2o3 srtio3 srtio3_gradient cu_pair si_sigma9 pt_decahedron asi_particle".split()


def _compose(*overrides: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("scale", ["ci", "small"])
@pytest.mark.parametrize("sample", PHANTOMS)
def test_phantom_presets_compose_and_validate(sample, scale):
    cfg = _compose(f"sample={sample}", f"scale={scale}")
    atoms = prepare(simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)}))
    assert cfg["sample"]["name"] == sample and len(atoms) > 20


@pytest.mark.slow
@pytest.mark.parametrize("sample", PHANTOMS)
def test_phantom_paper_presets_validate(sample):
    cfg = _compose(f"sample={sample}", "scale=paper")
    atoms = prepare(simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)}))
    assert len(atoms) > 400


TRUTH = {  # builder truth that each dataset must carry, beyond positions and numbers
    "srtio3": ["truth_tilt_mrad", "truth_thickness_A"],
    "srtio3_gradient": ["truth_tilt_profile", "truth_tilt_map", "truth_tilt_at_positions",
                        "truth_thickness_A"],
    "cu_pair": ["truth_tilt_regions", "truth_tilt_map", "truth_tilt_at_positions"],
    "si_sigma9": ["snapshots", "truth_boundary_x", "truth_md", "truth_strain"],
    "pt_decahedron": ["truth_fivefold_axis"],
}


def _check_job(sample: str, summary: dict) -> None:
    """The job's dataset: noise-free patterns that keep most of the beam, and its truth."""
    from simulate.store import Dataset

    assert summary["sample"] == sample and summary["n_atoms"] > 20
    assert 0.3 < summary["mean_counts_per_pattern"] <= 1.0 + 1e-4  # fraction of the beam
    ds = Dataset(Path(summary["dataset"]))
    assert len(ds.array("truth/positions")) == summary["n_atoms"]
    for name in TRUTH.get(sample, []):  # tilt maps are NaN in vacuum, never inf or all NaN
        truth = np.asarray(ds.array(f"truth/{name}"), dtype=float)
        assert truth.size > 0 and not np.isinf(truth).any() and np.isfinite(truth).any(), name
    if sample == "si_sigma9":
        assert ds.array("truth/snapshots").shape == (4, summary["n_atoms"], 3)
        assert ds.meta["num_configurations"] == 4


@pytest.mark.parametrize("sample", PHANTOMS)
def test_phantom_simulates_through_the_app(sample, tmp_path):
    """The ci preset through the app's simulate job, coarsened (one tilt, 4 Å scan step) to
    keep this file fast; the full ci preset runs in the slow CLI test below."""
    from experiments.cli import simulate_job

    cache = tmp_path / "cache"
    cfg = _compose(
        f"sample={sample}",
        "scale=ci",
        "task=simulate",
        "experiment=none",
        f"cache_dir={cache}",
        "output.figures=false",
        "scan.step=4.0",
        "tilts.count=1",
        "phonons.num_configs=1",
    )
    _check_job(sample, simulate_job(cfg, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("sample", PHANTOMS)
def test_cli_simulates_every_phantom_at_ci(sample, tmp_path):
    """``python -m experiments.cli task=simulate sample=<name> scale=ci`` end to end."""
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.cli",
        "task=simulate",
        f"sample={sample}",
        "scale=ci",
        "experiment=none",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=CONF.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    _check_job(sample, summary)
