"""Sweeps that survive faults (issue 13, item 4): a killed sweep resumes where it stopped when
the same command is run again, a job that raises is listed as failed in the table and makes the
command exit non-zero, ``metrics.json`` is strict JSON, an unknown key is refused by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["scale=ci", "sample.diameter=6.0", "scan.step=1.6", "tilts.count=2",
        "phonons.num_configs=1", "algorithm.iterations=2", "progress=false"]


def _cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *TINY, *overrides]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "PTYCHOBENCH_CACHE": str(cache), "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"metrics.json holds {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_killed_sweep_resumes_when_the_same_command_runs_again(tmp_path, sim_cache):
    """No sweep directory is given: it is named from the study and the overrides, so the same
    command finds it again; the finished job is skipped and the table is complete."""
    cmd, env = _cmd("algorithm=resire,sirt"), _env(sim_cache)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not list(tmp_path.glob("multirun/**/metrics.json")) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # killed after its first job
    proc.wait()
    first = list(tmp_path.glob("multirun/**/metrics.json"))
    assert len(first) == 1 and not list(tmp_path.glob("multirun/**/results.csv"))
    stamp = first[0].stat().st_mtime_ns
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert first[0].stat().st_mtime_ns == stamp and "skipped: True" in res.stdout
    sweeps = list(tmp_path.glob("multirun/*/*/results.csv"))
    assert len(sweeps) == 1 and sweeps[0].parent.parent.name == "headline"  # the default study
    df = pd.read_csv(sweeps[0])
    assert sorted(df["algorithm"]) == ["resire", "sirt"] and (df["status"] == "ok").all()


def test_a_failing_job_is_listed_and_the_sweep_exits_non_zero(tmp_path, sim_cache):
    res = subprocess.run(_cmd("algorithm=resire,mset", "detector.adf=false",
                              f"hydra.sweep.dir={tmp_path}"),
                         env=_env(sim_cache), capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert res.returncode != 0
    assert "2 jobs: 1 ok, 1 failed" in res.stdout
    df = pd.read_csv(tmp_path / "results.csv").set_index("algorithm")
    assert df.loc["mset", "status"] == "ok" and df.loc["resire", "status"] == "failed"
    assert "detector.adf" in df.loc["resire", "error"]
    assert "| failed |" in (tmp_path / "results.md").read_text()
    for path in tmp_path.rglob("metrics.json"):
        _strict(path.read_text())
    job = next(p.parent for p in tmp_path.rglob("metrics.json") if "resire" in str(p))
    assert "ConfigError" in (job / "error.txt").read_text()


@pytest.mark.parametrize("key", ["noise.dosee", "output.figure", "device.nmae", "seeed"])
def test_an_unknown_key_is_refused_by_name(tmp_path, key):
    res = subprocess.run(_cmd("experiment=none", f"+{key}=5"), env=_env(tmp_path / "c"),
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode != 0 and f"config key '{key}'" in res.stderr, res.stderr[-2000:]
    assert "TypeError" not in res.stderr and "a key of [" in res.stderr  # the allowed keys
    assert not (tmp_path / "c").exists()  # before any compute
