"""A method from another package (issue 13, item 3): a tiny plugin package, installed into a
temporary location (a ``site`` directory with its ``dist-info`` and entry point), registers its
variant through the ``ptychobench.variants`` entry-point group, appears in ``algorithm=`` with
its schema defaults (no YAML in this repository) and runs through the app into the table."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TINY = ["scale=ci", "sample.diameter=6.0", "scan.step=1.6", "tilts.count=2",
        "phonons.num_configs=1", "progress=false"]

PLUGIN = '''
"""tinyplug: the back-projection of the ADF series, a volume (a plugin of ptychobench)."""
from dataclasses import dataclass

import torch

from reconstruct.loop import History
from reconstruct.result import Reconstruction
from reconstruct.variants.base import Variant, register_variant
from reconstruct.variants.linear import LinearTomography


@dataclass
class BackprojectionConfig:
    name: str = "tinyplug_bp"
    scale: float = 1.0


def run(data, cfg, seed, progress):
    model = LinearTomography(data)
    b = data.haadf.reshape(data.n_tilts, -1)
    (bp,) = torch.autograd.grad((model() * b).sum(), model.volume)
    return Reconstruction(history=History(), volume=cfg.scale * bp.clamp(min=0))


register_variant(Variant("tinyplug_bp", BackprojectionConfig, {"haadf"}, run))
'''


def _install(site: Path) -> None:
    """What ``pip install --target site`` leaves: the module and its dist-info."""
    (site / "tinyplug").mkdir(parents=True)
    (site / "tinyplug" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ptychobench.variants]\ntinyplug = tinyplug\n")


def test_a_plugin_package_adds_a_method_to_the_app(tmp_path, sim_cache):
    site = tmp_path / "site"
    _install(site)
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(sim_cache), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.cli", *TINY, f"hydra.sweep.dir={sweep}",
           "algorithm=tinyplug_bp,resire"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(sweep / "results.csv")
    assert sorted(df["algorithm"]) == ["resire", "tinyplug_bp"] and (df["status"] == "ok").all()
    row = df.set_index("algorithm").loc["tinyplug_bp"]
    assert row["n_true"] > 0 and row["tp"] > 0 and row["fsc_resolution_A"] > 0  # scored
    without = subprocess.run([sys.executable, "-m", "experiments.cli", *TINY, "experiment=none",
                              "algorithm=tinyplug_bp"], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)})
    assert without.returncode != 0 and "tinyplug_bp" in without.stderr  # not installed: refused
