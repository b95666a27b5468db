"""The experiment harness (config options are checked in test_configs.py): every experiment
preset runs at tiny size for 2 iterations, multiruns are collected into a table, re-runs
resume, failures are reported and never scored, invalid combinations fail before compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.collect import collect, to_markdown
from experiments.figures import summary_figure
from experiments.scoring import ScoringConfig, Truth, public, score_or_fail

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TINY = ["scale=ci", "sample.diameter=6.0", "scan.step=1.6", "tilts.count=2",
        "phonons.num_configs=1", "algorithm.iterations=2", "progress=false"]


def _run(sweep: Path, cache: Path, *overrides: str, tiny: bool = True
         ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(cache), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "experiments.cli", f"hydra.sweep.dir={sweep}",
           f"hydra.run.dir={sweep}/run", *(TINY if tiny else []), *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)


def _first_values(experiment: str, fixed: list[str] = TINY) -> list[str]:
    """Override each swept parameter of a preset to its first value (one job per preset; the
    command line wins over the sweeper's params), except those that ``fixed`` sets."""
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    params = (yaml.safe_load(text) or {}).get("hydra", {}).get("sweeper", {}).get("params", {})
    tiny = {arg.split("=")[0] for arg in fixed}  # keep the tiny sizes (e.g. the scan step)
    return [f"{k}={_first(str(v))}" for k, v in params.items() if k not in tiny]


def _first(sweep: str) -> str:
    """The first value of a sweep ``a,b,...``, where a value may be a list ``[x,y]``."""
    depth = 0
    for i, ch in enumerate(sweep):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            return sweep[:i]
    return sweep


def _own_sample(experiment: str) -> bool:
    """Whether a preset picks its own sample (papers 002/003) rather than the CuAu default."""
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    defaults = (yaml.safe_load(text) or {}).get("defaults", [])
    return any(isinstance(d, dict) and "override /sample" in d for d in defaults) or any(
        str(v).count(",") for k, v in (yaml.safe_load(text) or {}).get("hydra", {})
        .get("sweeper", {}).get("params", {}).items() if k == "sample")


# a preset with its own (single-projection) sample: its ci size, 2 iterations; the SrTiO3 ones
# at 10 mrad, the dataset of tests/test_ptycho_physics.py (simulated once per session), the
# others coarsened
OWN_TINY = ["scale=ci", "algorithm.iterations=2", "progress=false"]
COARSE = ["scan.step=2.4", "phonons.num_configs=1"]
# paper 000's chain (tcBF, fpp per tilt, joint fit, e2e) on 3 tilts, each stage cut short
E2E_SHORT = [*COARSE, "tilts.count=3", "algorithm.fpp_iterations=5",
             "algorithm.joint_iterations=20", "algorithm.linear_iterations=5"]
# paper 004's LOT on the ci decahedron (318 atoms) at 4 of its 8 tilts: the job, not the numbers
LOT_SHORT = [*COARSE, "tilts.count=4"]
OWN_SIZES = {"paper002_mistilt": ["sample.tilt_x=10.0"], "paper002_slices": [],
             "paper004_decahedron": LOT_SHORT, "paper004_size": LOT_SHORT,
             **{f"paper000_{k}": E2E_SHORT for k in ("alignment", "tilt_range", "subsampling")}}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                                              if p.stem != "none"))
def test_every_experiment_preset_runs(experiment, tmp_path, sim_cache):
    own = _own_sample(experiment)
    fixed = [*OWN_TINY, *OWN_SIZES.get(experiment, COARSE)] if own else TINY
    res = _run(tmp_path / "sweep", sim_cache, f"experiment={experiment}",
               *_first_values(experiment, fixed), *(fixed if own else []), tiny=not own)
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert len(df) == 1 and df.loc[0, "status"] == "ok"
    job = tmp_path / "sweep" / df.loc[0, "job"]
    for name in ("metrics.json", "loss.png", "provenance.json"):
        assert (job / name).is_file(), name
    if own:  # one projection: object states, scored by what the sample's truth allows
        assert (job / "estimates.npz").is_file() and 0 <= df.loc[0, "r_factor"] < 1
        return
    assert 0.0 <= df.loc[0, "tracing_error"] and df.loc[0, "n_true"] > 0
    for name in ("volume.npy", "slab.png", "deviations.png"):
        assert (job / name).is_file(), name


def test_multirun_table_resume_and_summary_figure(tmp_path, sim_cache):
    sweep = tmp_path / "sweep"
    res = _run(sweep, sim_cache, "algorithm=mset,resire")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| mset |" in res.stdout and "| resire |" in res.stdout  # the table is printed
    df = collect(sweep)
    assert sorted(df["algorithm"]) == ["mset", "resire"]
    assert "algorithm" in df.attrs["swept"] and "| mset |" in to_markdown(df)
    md = (sweep / "results.md").read_text().splitlines()
    assert sum(line.startswith("|") for line in md) == 4  # header, rule, 2 rows
    assert "RMSD (pm)" in md[0]  # headers carry units
    rmsd = collect(sweep).set_index("algorithm")["rmsd_pm"]
    order = " < ".join(rmsd.sort_values().index)
    head, ranked = md[-1].split(": ", 1)
    assert head == "RMSD (pm)" and " < ".join(ranked.split(" ")[::3][:2]) == order
    stamps = {p: p.stat().st_mtime_ns for p in sweep.rglob("metrics.json")}
    again = _run(sweep, sim_cache, "algorithm=mset,resire")
    assert again.returncode == 0 and "skipped: True" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("metrics.json")} == stamps
    fig = summary_figure(pd.read_csv(sweep / "results.csv"), "algorithm")
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == "RMSD (pm)"
    out = subprocess.run([sys.executable, "-m", "experiments.collect", str(sweep)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "resire" in out.stdout


class _FakeDataset:
    """The truth of 41 O (Z = 8) and 54 Ba (Z = 56) atoms on a line, 3 Å apart."""

    meta = {"voxel_size_A": 0.4, "origin_xyz_A": [0.0, 0.0, 0.0]}

    def __init__(self) -> None:
        pos = np.zeros((95, 3))
        pos[:, 0] = 3.0 * np.arange(95)
        self.arrays = {"truth/positions": pos, "truth/numbers": np.array([8] * 41 + [56] * 54)}

    def has(self, name: str) -> bool:
        return name in self.arrays

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name]


def test_collect_names_the_recall_per_species(tmp_path):
    """The atom scorers' per-species recall columns are named by element symbol, in the table,
    and a failed job (no scores) leaves its recall empty."""
    ds = _FakeDataset()
    true_pos, true_z = ds.arrays["truth/positions"], ds.arrays["truth/numbers"]
    for alg, n_o in (("mset", 37), ("sset", 27), ("resire", None)):
        job = tmp_path / f"algorithm={alg}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- algorithm={alg}\n")
        keep = np.r_[np.arange(n_o or 0), np.arange(41, 95)]  # n_o of the O atoms found
        est = {"atoms.positions": true_pos[keep], "atoms.numbers": true_z[keep]}
        record = score_or_fail(est, None if n_o else "diverged", Truth(ds), ScoringConfig())
        (job / "metrics.json").write_text(json.dumps(public(record)))
    df = collect(tmp_path).set_index("algorithm")
    assert df.loc["mset", "recall_O"] == pytest.approx(37 / 41)
    assert df.loc["sset", "recall_Ba"] == pytest.approx(1.0)
    assert np.isnan(df.loc["resire", "recall_O"])
    md = to_markdown(collect(tmp_path))
    assert "recall Ba | recall O |" in md and "| mset | ok |" in md and "| 0.902 |" in md


def test_diverging_reconstruction_is_reported_failed_not_scored(tmp_path, sim_cache):
    res = _run(tmp_path / "sweep", sim_cache, "experiment=none", "hydra.mode=MULTIRUN",
               "algorithm.optimizer=sgd", "algorithm.lr=1e12")
    assert res.returncode != 0 and "1 jobs: 0 ok, 1 failed" in res.stdout, res.stderr[-3000:]
    text = next((tmp_path / "sweep").rglob("metrics.json")).read_text()
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert record["status"] == "failed" and "rmsd_pm" not in record
    assert "diverged" in record["error"] or "NaN" in record["error"]


@pytest.mark.parametrize(("overrides", "key"), [
    (["algorithm=sset", "algorithm.slice_thickness=0.8"], "algorithm.slice_thickness"),
    (["algorithm=resire", "detector.adf=false"], "detector.adf"),
    (["algorithm=mset", "+algorithm.momentum=0.9"], "momentum"),
])
def test_invalid_combinations_fail_before_compute(tmp_path, overrides, key):
    res = _run(tmp_path / "sweep", tmp_path / "cache", "experiment=none", *overrides)
    assert res.returncode != 0 and key in res.stderr
    assert not (tmp_path / "cache").exists()


def test_summary_figure_draws_infinite_dose_as_its_own_tick():
    df = pd.DataFrame({"algorithm": ["mset", "mset", "sset", "sset", "sset"],
                       "noise.dose": ["inf", "2e5", "inf", "2e5", "2e4"],
                       "status": ["ok", "ok", "ok", "ok", "failed"],
                       "rmsd_pm": [6.0, 9.0, 10.0, 11.0, None],
                       "tracing_error": [0.0, 0.01, 0.02, 0.03, None],
                       "classification_rate": [1.0, 0.99, 0.98, 0.97, None]})
    fig = summary_figure(df, "noise.dose")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xticklabels()[-1].get_text() == "∞"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["mset"].get_xdata()) == [2e5, 2e6]  # inf one decade past 2e5
    assert list(lines["sset"].get_ydata()) == [11.0, 10.0]  # the failed job is not drawn


def test_the_figure_cli_draws_the_chosen_metrics(tmp_path):
    """Paper 002 Fig. 4 style: ``--y`` picks the panels, labelled with the scorers' units."""
    from experiments.figures import main as figure_main

    csv = tmp_path / "results.csv"
    pd.DataFrame({"algorithm": ["fpp", "fpp", "app", "app"], "sample.tilt_x": [0, 12] * 2,
                  "status": ["ok"] * 4, "d_sr_tio_pm": [0.5, 3.0, 0.4, 0.6],
                  "d_o_tio_pm": [0.6, 9.0, 0.5, 0.8]}).to_csv(csv, index=False)
    out = tmp_path / "fig4.png"
    figure_main([str(csv), "--x", "sample.tilt_x", "--y", "d_sr_tio_pm", "d_o_tio_pm",
                 "--out", str(out)])
    assert out.is_file()
    with pytest.raises(SystemExit, match="d_o_ti_pm"):
        figure_main([str(csv), "--x", "sample.tilt_x", "--y", "d_o_ti_pm"])
    fig = summary_figure(pd.read_csv(csv), "sample.tilt_x", panels=(
        ("d_o_tio_pm", "d(O–TiO) (pm)", 1.0),))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["fpp"].get_ydata()) == [0.6, 9.0] and len(fig.axes) == 1
