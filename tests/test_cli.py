"""The ``ptychobench`` Hydra app: composition of every group, validation, the default job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.schema import register_configs
from simulate.pipeline import SECTIONS, prepare, simulation_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("scale", ["ci", "small", "paper"])
@pytest.mark.parametrize("sample", ["cuau", "bao"])
def test_every_preset_composes_and_validates(scale, sample):
    cfg = OmegaConf.to_container(_compose(f"scale={scale}", f"sample={sample}"), resolve=True)
    assert cfg["preset"] == scale and cfg["sample"]["name"] == sample
    sim = simulation_config({k: cfg[k] for k in ("sample", *SECTIONS)})
    atoms = prepare(sim)  # builds the model and runs every validation, no abTEM work
    assert len(atoms) > 0


def test_paper_preset_uses_paper_001_parameters():
    cfg = _compose("scale=paper", "microscope=paper001_defocus", "tilts=pm75")
    assert cfg.microscope.energy == 300e3 and cfg.microscope.semiangle == 21.0
    assert cfg.microscope.defocus == -200.0  # Δf = -20 nm in paper 001 = abTEM defocus -200 Å
    assert cfg.potential.sampling == 0.057 and cfg.potential.slice_thickness == 2.0
    assert cfg.scan.step == 0.4 and cfg.phonons.num_configs == 8 and cfg.tilts.count == 20
    assert list(cfg.tilts.range) == [-75.0, 75.0] and cfg.sample.cell == 51.2


def test_unknown_override_key_is_refused_by_name():
    with pytest.raises(Exception, match="stepsize"):
        _compose("scan.stepsize=1.0")


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "experiments.cli", f"hydra.run.dir={tmp_path / 'run'}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "progress=false", *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=CONF.parent)


def test_simulate_job_end_to_end(tmp_path):
    sim = ("task=simulate", "experiment=none", "tilts.count=2", "phonons.num_configs=1",
           "noise=poisson", "scan.step=1.6")
    res = _run(tmp_path, *sim)
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sample"] == "cuau" and summary["n_atoms"] > 5
    assert summary["diffraction_shape"][:3] == [2, 8, 8]
    expected = 2e5 / 2 * 1.6**2  # dose per tilt × step area, minus what left the detector
    assert 0.9 * expected < summary["mean_counts_per_pattern"] <= expected * 1.01
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["config"]["noise"]["dose"] == 2e5 and "git_commit" in prov
    assert (run / "dataset.png").stat().st_size > 10_000
    again = _run(tmp_path, *sim)
    assert json.loads((run / "summary.json").read_text())["load_or_simulate_s"] < 2.0, again.stderr


def test_bad_value_fails_before_compute_with_key(tmp_path):
    res = _run(tmp_path, "scan.step=-1")
    assert res.returncode != 0 and "scan.step" in res.stderr
    assert not (tmp_path / "cache").exists()


def test_haadf_only_simulate_job(tmp_path):
    """A series without a pixelated detector (paper 004's HAADF tomography) stores and reports
    its ADF images; the counts follow the dose times the fraction the annulus collects."""
    sim = ("task=simulate", "experiment=none", "tilts.count=2", "phonons.num_configs=1",
           "noise=poisson", "detector.pixelated=false", "detector.adf=true", "scan.step=1.6")
    res = _run(tmp_path, *sim)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["measurement"] == "haadf" and summary["haadf"]
    assert summary["haadf_shape"] == [2, 8, 8]
    electrons = 2e5 / 2 * 1.6**2
    assert 0.0 < summary["mean_counts_per_pattern"] < 0.5 * electrons  # the annulus sees a part
    assert (tmp_path / "run" / "dataset.png").stat().st_size > 10_000
