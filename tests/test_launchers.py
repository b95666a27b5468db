"""Sweeps on Hydra's joblib launcher and on submitit (issue 17, "Sweeps"): jobs run in parallel
processes that share one dataset in the cache (simulated once, under its file lock), land in
the sweep directory the command's overrides name (so the sweep resumes, on any launcher), and
the table is written when the last one finishes; the SLURM preset composes with its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.schema import sweep_name

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# the default study (a multirun) cut to two sub-second reconstructions of one tiny dataset, the
# one tests/test_sweeps.py and tests/test_harness.py simulate into the session's cache
TINY = ["scale=ci", "sample.diameter=6.0", "scan.step=1.6", "tilts.count=2",
        "phonons.num_configs=1", "algorithm.iterations=2", "output.figures=false",
        "progress=false", "algorithm=resire,sirt"]
# each job records its process and wall interval (this module's callback, run in the job)
PROBE = "+hydra.callbacks.probe._target_=test_launchers.JobProbe"


class JobProbe(Callback):
    """Writes ``probe.json`` into the job directory: the pid of the process that ran the job
    and when it started and ended (wall clock, comparable between processes)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        out = Path(config.hydra.runtime.output_dir) / "probe.json"
        out.write_text(json.dumps({"pid": os.getpid(), "start": self.start, "end": time.time()}))


def _sweep(cwd: Path, cache: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, int]:
    """The sweep of two jobs as a command run in ``cwd`` (the sweep directory is named from the
    overrides, under ``cwd/multirun``); returns its result and the launching process's pid."""
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(cache), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    cmd = [sys.executable, "-m", "experiments.cli", *TINY, PROBE, *overrides]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), proc.pid


def _table(cwd: Path) -> tuple[Path, pd.DataFrame]:
    """The one sweep directory under ``cwd`` and its table, checked: both jobs listed, ok."""
    sweeps = [p.parent for p in cwd.glob("multirun/*/*/results.csv")]
    assert len(sweeps) == 1, sweeps
    sweep = sweeps[0]
    # named from the study and the overrides, the launcher's left out, in every worker too
    assert sweep.parent.name == "headline" and sweep.name == sweep_name(TINY), sweep
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    df = pd.read_csv(sweep / "results.csv")
    assert sorted(df["algorithm"]) == ["resire", "sirt"] and (df["status"] == "ok").all()
    assert "| resire |" in (sweep / "results.md").read_text()
    return sweep, df


def test_joblib_runs_the_jobs_in_parallel_processes_sharing_one_dataset(tmp_path):
    """The cache starts empty: the two jobs start together and race for its one dataset."""
    cache = tmp_path / "cache"
    res, parent = _sweep(tmp_path, cache, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 jobs: 2 ok, 0 failed" in res.stdout
    sweep, df = _table(tmp_path)
    probes = [json.loads(p.read_text()) for p in sweep.glob("*/probe.json")]
    assert len(probes) == 2
    pids = {p["pid"] for p in probes}
    assert len(pids) == 2 and parent not in pids, (pids, parent)  # two workers, not the parent
    # they ran at the same time: each started before the other ended
    assert max(p["start"] for p in probes) < min(p["end"] for p in probes), probes
    # one dataset, simulated once for both (the other job waited on its lock)
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and set(df["dataset_key"]) == {entries[0].name}
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name.startswith(".")]


def test_submitit_local_runs_the_sweep_and_writes_the_table(tmp_path, sim_cache):
    res, parent = _sweep(tmp_path, sim_cache, "hydra/launcher=slurm_local",
                         "hydra.launcher.timeout_min=5")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 jobs: 2 ok, 0 failed" in res.stdout
    sweep, _ = _table(tmp_path)
    assert list(sweep.glob(".submitit/*")), "submitit's folder is inside the sweep"
    pids = {json.loads(p.read_text())["pid"] for p in sweep.glob("*/probe.json")}
    assert len(pids) == 2 and parent not in pids  # each job in its own process


def test_the_slurm_preset_composes_with_its_keys_overridden():
    from hydra import compose, initialize_config_dir

    from experiments.schema import register_configs

    register_configs()
    keys = {"partition": "gpu-a100", "gpus_per_node": 2, "timeout_min": 45,
            "array_parallelism": 3, "cpus_per_task": 8, "mem_gb": 64}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm",
                                 *(f"hydra.launcher.{k}={v}" for k, v in keys.items())])
        default = compose(config_name="config", return_hydra_config=True,
                          overrides=["hydra/launcher=slurm"])
        local = compose(config_name="config", return_hydra_config=True,
                        overrides=["hydra/launcher=slurm_local", "hydra.launcher.timeout_min=7"])
        joblib = compose(config_name="config", return_hydra_config=True,
                         overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert {k: launcher[k] for k in keys} == keys
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # in the sweep
    assert default.hydra.launcher.gpus_per_node == 1 and default.hydra.launcher.partition is None
    assert "qos" in launcher  # the plugin's other keys are still there
    assert local.hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert local.hydra.launcher.timeout_min == 7 and local.hydra.launcher.gpus_per_node == 1
    assert "partition" not in local.hydra.launcher
    # the plugin's own joblib preset, not shadowed by a file of ours
    assert joblib.hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert joblib.hydra.launcher.n_jobs == 3
