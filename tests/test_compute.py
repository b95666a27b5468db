"""Simulation on dask (compute=local|dask_local|dask) and on the GPU (compute.sim_device).

The dask test runs the README's command on a 2-worker LocalCluster: its workers are fresh
processes that plan their own FFTs, so the dataset equals the serial one bitwise only if the
serial path is deterministic (it was not with abTEM's default FFTW_MEASURE planning: ~1e-8
absolute differences between processes).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from conftest import tiny_config

from simulate.compute import check_compute
from simulate.config import ComputeConfig
from simulate.errors import ConfigError
from simulate.pipeline import prepare, run_simulation, simulation_config
from simulate.store import Dataset, cache_key, get_dataset
from simulate.tiltseries import simulate_tilt

ROOT = Path(__file__).resolve().parents[1]
TINY = ("task=simulate", "experiment=none", "tilts.count=3", "phonons.num_configs=2",
        "scan.step=1.6", "progress=false")


def _simulate(tmp: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(tmp / name), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "experiments.cli", f"hydra.run.dir={tmp / ('run_' + name)}",
           *TINY, "output.figures=false", *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


def _only_entry(cache: Path) -> Dataset:
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) == 1, entries
    return Dataset(entries[0])


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="needs distributed")
def test_dask_local_cluster_gives_bitwise_the_serial_dataset(tmp_path):
    serial = _simulate(tmp_path, "serial")
    assert serial.returncode == 0, serial.stderr[-3000:]
    cluster = _simulate(tmp_path, "cluster", "compute=dask_local", "compute.workers=2")
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    a, b = _only_entry(tmp_path / "serial"), _only_entry(tmp_path / "cluster")
    assert a.key == b.key  # how it was computed is not part of the dataset's identity
    for name in ("measurements/diffraction", "measurements/haadf"):
        x, y = a.array(name), b.array(name)
        assert x.std() > 0 and np.array_equal(x, y), (name, np.abs(x - y).max())
    assert "compute: dask_local" in cluster.stdout


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"name": "slurm"}, "compute.name"),
    ({"name": "dask"}, "compute.address"),
    ({"workers": 0}, "compute.workers"),
    ({"max_memory_gb": -1.0}, "compute.max_memory_gb"),
    ({"sim_device": "tpu"}, "compute.sim_device"),
])
def test_bad_compute_is_refused_by_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_compute(ComputeConfig(**kwargs))


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_gpu_simulation_without_cupy_is_refused_before_compute(tmp_path):
    res = _simulate(tmp_path, "gpu", "compute.sim_device=gpu")
    assert res.returncode != 0
    assert "compute.sim_device" in res.stderr and "CuPy is not installed" in res.stderr
    assert not (tmp_path / "gpu").exists()  # nothing simulated, no cache made


def test_a_failing_task_leaves_no_entry(tmp_path):
    """A lazy measurement whose computation fails part-way: no entry, no temporary left."""
    cfg = simulation_config(tiny_config())  # 2 tilts

    def broken(block: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[0]["chunk-location"][0] == 1:
            raise RuntimeError("worker lost")
        return block

    def simulator(c):
        ts, atoms = run_simulation(c, progress=False, atoms=prepare(c), lazy=True)
        ts.diffraction = ts.diffraction.rechunk((1, *ts.diffraction.shape[1:]))
        ts.diffraction = ts.diffraction.map_blocks(broken, dtype=np.float32)
        assert isinstance(ts.diffraction, da.Array)
        return ts, atoms

    with pytest.raises(RuntimeError, match="worker lost"):
        get_dataset(cfg, tmp_path, simulator)
    assert not (tmp_path / cache_key(cfg)).exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


@pytest.mark.cuda
@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="needs CuPy and a GPU")
def test_gpu_simulation_equals_cpu_to_float32_precision():
    cfg = simulation_config(tiny_config(tilts={"count": 1}))
    atoms = prepare(cfg)
    grid = np.stack(np.meshgrid(*(np.arange(0, 8.0, 1.6),) * 2, indexing="ij"), -1)
    pos = grid.reshape(-1, 2)
    cpu, _, _ = simulate_tilt(atoms, cfg, np.zeros(3), np.zeros(2), pos, seed=0)
    gpu, _, _ = simulate_tilt(atoms, cfg, np.zeros(3), np.zeros(2), pos, seed=0,
                              sim_device="gpu")
    assert isinstance(gpu, np.ndarray)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-6 * float(cpu.max()))


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="needs distributed")
def test_compute_dask_uses_a_running_scheduler(tmp_path):
    """``compute=dask``: the graph runs on the scheduler at ``compute.address`` (here one this
    test started, as dask-jobqueue would), and the dataset equals the serial one."""
    from distributed import LocalCluster

    from simulate.pipeline import load_dataset

    cfg = simulation_config(tiny_config())
    serial = load_dataset(cfg, tmp_path / "serial", progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        compute = ComputeConfig(name="dask", address=cluster.scheduler_address)
        remote = load_dataset(cfg, tmp_path / "remote", progress=False, compute=compute)
        assert cluster.scheduler.transition_counter > 0  # the work went through this scheduler
    for name in ("measurements/diffraction", "measurements/haadf"):
        assert np.array_equal(serial.array(name), remote.array(name)), name
