"""Shared fixtures: tiny simulation configs and a session-wide cached dataset."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# One intra-op thread per process (before torch is imported; subprocesses inherit it): the
# suite's tensors are small, and on CI's 2 cores the subprocess tests (dask, joblib, torchrun)
# oversubscribe. Measured: 1396 s with torch's default 2 threads, 977 s with 1 while another
# 1-thread job shared the machine (pytest -q, 909 tests).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def tiny_config(**overrides: dict) -> dict:
    """A seconds-sized simulation config as a plain mapping (sections overridable)."""
    cfg = {
        "sample": {"name": "cuau", "cell": 12.8, "diameter": 8.0, "seed": 1},
        "potential": {"sampling": 0.1, "slice_thickness": 1.0},
        "scan": {"step": 1.6},
        "detector": {"max_angle": 30.0, "adf": True, "adf_inner": 30.0, "adf_outer": 64.0},
        "tilts": {"range": [-45.0, 45.0], "count": 2, "endpoint": True},
        "phonons": {"num_configs": 1, "seed": 3},
        "truth": {"voxel_size": 0.4},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache directory shared by the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_dataset(sim_cache):
    """The tiny CuAu dataset (simulated once per session)."""
    from simulate.pipeline import load_dataset

    return load_dataset(tiny_config(), sim_cache)
