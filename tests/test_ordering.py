"""Issue 5, acceptance 1: paper 001's ordering as a CI regression test.

The ``ordering`` preset (conf/experiment/ordering.yaml: an 18-atom CuAu particle in a 12.8 Å
cube, 0.8 Å step, 8 tilts over ±75°, 4D-STEM at -20 nm defocus and the ADF series in focus,
2e6 e/Å² for the series) runs through the app for two noise seeds. Measured on 2026-11-23
(``ptychobench experiment=ordering``, OMP_NUM_THREADS=1, about 5 minutes on 2 cores):

    algorithm  RMSD seed 0/1 (pm)  tracing error seed 0/1
    mset       9.56 / 9.45         0 / 0
    sset       10.44 / 10.34       0 / 0
    resire     25.11 / 25.60       0.389 / 0.389

MSET beats SSET and SSET beats RESIRE in RMSD for both seeds. In tracing error MSET and SSET
tie at 0 on a phantom this small (both find every atom), so that pair is asserted as "not
worse" and the strict ordering only against RESIRE. Thresholds are the measured values plus
a stated margin: 15 % on RMSD, one atom (1/18) on tracing error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MEASURED = {  # algorithm: (max RMSD over seeds in pm, max tracing error over seeds)
    "mset": (9.56, 0.0),
    "sset": (10.44, 0.0),
    "resire": (25.60, 0.389),
}
RMSD_MARGIN, TRACING_MARGIN = 1.15, 1 / 18


@pytest.fixture(scope="module")
def ordering_table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    sweep = tmp_path_factory.mktemp("ordering")
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(sweep / "cache"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "experiments.cli", "experiment=ordering", "progress=false",
           f"hydra.sweep.dir={sweep / 'runs'}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return pd.read_csv(sweep / "runs" / "results.csv")


def test_paper001_ordering_holds_for_two_noise_seeds(ordering_table):
    df = ordering_table
    assert (df["status"] == "ok").all() and len(df) == 6
    for seed, rows in df.groupby("noise.seed"):
        r = rows.set_index("algorithm")
        rmsd, trace = r["rmsd_pm"], r["tracing_error"]
        assert rmsd["mset"] < rmsd["sset"] < rmsd["resire"], (seed, rmsd.to_dict())
        assert trace["mset"] <= trace["sset"] < trace["resire"], (seed, trace.to_dict())


@pytest.mark.parametrize("algorithm", sorted(MEASURED))
def test_ordering_scores_do_not_regress(ordering_table, algorithm):
    rmsd, trace = MEASURED[algorithm]
    rows = ordering_table[ordering_table["algorithm"] == algorithm]
    assert rows["rmsd_pm"].max() <= rmsd * RMSD_MARGIN
    assert rows["tracing_error"].max() <= trace + TRACING_MARGIN


def test_the_default_job_is_the_ordering_regression_at_one_seed():
    """``ptychobench`` with no arguments runs the conditions this regression checks (seed 0)
    over MSET, SSET and RESIRE, so its first table shows paper 001's ordering (measured: about
    a minute on 2 cores, first simulation included; README)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        default = compose(config_name="config", return_hydra_config=True)
        ordering = compose(config_name="config", overrides=["experiment=ordering",
                                                            "noise.seed=0"])
    params = dict(default.hydra.sweeper.params)
    assert default.hydra.mode.name == "MULTIRUN"
    assert params == {"algorithm": "mset,sset,resire", "noise.seed": "0"}
    job = OmegaConf.to_container(default, resolve=False)
    job.pop("hydra")
    assert job == OmegaConf.to_container(ordering, resolve=False)
