"""Data-parallel reconstruction (compute.ddp): gloo on the CPU, 2 processes under torchrun.

Every rank evaluates its share of each batch and the gradients are summed over the ranks
(reconstruct.distributed), so the updates are those of one process: the tiny series is fitted
in float64 and the estimates agree to 1e-6 relative (measured: ~1e-13). In float32 the same
comparison is limited by the rounding of differently ordered sums (~1e-5 after a few line-search
iterations, as large as changing ``chunk_size`` in one process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_worker import estimates

from reconstruct import distributed
from reconstruct.loop import batch_index

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ddp_worker.py"
ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _torchrun(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", *args]
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


@pytest.mark.parametrize("size", [2, 3])
def test_shards_cover_each_batch_once_with_its_weight(monkeypatch, size):
    batch = (1, torch.arange(10, 30))
    seen, weight = [], 0.0
    for rank in range(size):
        monkeypatch.setattr(distributed, "world", lambda r=rank: (r, size))
        for (tilt, part), w in distributed.shard([(batch, 1.0)], batch_index):
            assert tilt == 1
            seen += part.tolist()
            weight += w
    assert sorted(seen) == list(range(10, 30)) and weight == pytest.approx(1.0)
    # a batch that is no index is evaluated by rank 0 alone
    monkeypatch.setattr(distributed, "world", lambda: (1, size))
    assert distributed.shard([(None, 1.0)], batch_index) == []


@pytest.mark.parametrize("variant", ["mset", "mset_accumulated", "fpp"])
def test_gloo_two_processes_make_the_updates_of_one(tmp_path, variant):
    one = estimates(variant)
    res = _torchrun(str(WORKER), variant, str(tmp_path / "ddp.npz"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world size 2" in res.stdout
    two = np.load(tmp_path / "ddp.npz")
    assert set(two.files) == set(one)
    assert len(one["loss"]) == len(two["loss"]) and one["loss"][-1] < one["loss"][0]
    for key, a in one.items():
        b = two[key]
        scale = max(float(np.linalg.norm(a)), 1e-30)
        assert float(np.linalg.norm(a - b)) <= 1e-6 * scale, (key, np.linalg.norm(a - b) / scale)


def test_ddp_without_torchrun_is_refused_by_key(monkeypatch):
    from simulate.errors import ConfigError

    for key in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="compute.ddp"):
        with distributed.process_group(True, "cpu"):
            pass


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_cli_job_writes_one_result(tmp_path):
    """The README's command: a 2-process MSET job from the CLI; rank 0 scores and writes."""
    env = ENV | {"PTYCHOBENCH_CACHE": str(tmp_path / "cache")}
    job = ("experiment=none", "algorithm=mset", "algorithm.iterations=2", "tilts.count=3",
           "phonons.num_configs=1", "scan.step=1.6", "device=cpu", "progress=false",
           "output.figures=false")
    cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "experiments.cli",
           "compute.ddp=true", f"hydra.run.dir={tmp_path / 'ddp'}", *job]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = subprocess.run([sys.executable, "-m", "experiments.cli",
                             f"hydra.run.dir={tmp_path / 'one'}", *job], env=env,
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert ddp["status"] == one["status"] == "ok"
    prov = json.loads((tmp_path / "ddp" / "provenance.json").read_text())
    assert prov["config"]["compute"]["ddp"] is True
    # float32: the same fit up to the rounding of the sums (1e-5 relative, see the docstring)
    np.testing.assert_allclose(ddp["loss_history"], one["loss_history"], rtol=1e-4)
    a, b = (np.load(tmp_path / d / "volume.npy") for d in ("ddp", "one"))
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b)
