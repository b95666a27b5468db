"""Where the abTEM simulation runs: this process, a dask ``LocalCluster``, or a dask scheduler.

The simulation is a dask graph (abTEM's lazy measurements: tilts × frozen-phonon
configurations, reduced over the configurations). :func:`store` computes a lazy array into a
zarr array of the (temporary) dataset entry chunk by chunk, so a lost worker costs its task,
which dask reruns, and never the dataset; the entry is renamed into place only when complete.

Determinism: abTEM plans its FFTs with FFTW, by default ``FFTW_MEASURE``, which times candidate
algorithms and so picks different ones from run to run (two fresh simulations of one config
differed by ~2e-6 relative). :data:`ABTEM_SETTINGS` fixes ``FFTW_ESTIMATE`` (a fixed plan) and
one FFT thread in this process and on every worker (a worker plugin), so that every option
gives bitwise the same dataset.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

import abtem
import dask.array as da
import numpy as np

from simulate.config import ComputeConfig
from simulate.errors import ConfigError
from simulate.progress import progress_bar

NAMES = ("local", "dask_local", "dask")
SIM_DEVICES = ("cpu", "gpu")
ABTEM_SETTINGS: dict[str, Any] = {"fftw.planning_effort": "FFTW_ESTIMATE", "fftw.threads": 1}


def check_compute(cfg: ComputeConfig) -> None:
    """Refuse a bad ``compute`` section by key, before any compute (also: ``gpu`` without
    CuPy or without a CUDA device, a cluster without ``distributed``)."""
    if cfg.name not in NAMES:
        raise ConfigError("compute.name", cfg.name, f"one of {NAMES}")
    if cfg.workers < 1 or cfg.threads_per_worker < 1:
        raise ConfigError("compute.workers/threads_per_worker",
                          (cfg.workers, cfg.threads_per_worker), "integers >= 1")
    if cfg.name == "dask" and not cfg.address:
        raise ConfigError("compute.address", cfg.address,
                          "a dask scheduler address (tcp://host:8786) for compute=dask")
    if cfg.name != "local" and importlib.util.find_spec("distributed") is None:
        raise ConfigError("compute.name", cfg.name,
                          "local: dask.distributed is not installed (pip install -e '.[cluster]')")
    if cfg.max_memory_gb is not None and not cfg.max_memory_gb > 0:
        raise ConfigError("compute.max_memory_gb", cfg.max_memory_gb, "null or a number > 0")
    check_sim_device(cfg.sim_device)


def check_sim_device(name: str) -> None:
    """``cpu``, or ``gpu`` when CuPy imports and sees a CUDA device."""
    if name not in SIM_DEVICES:
        raise ConfigError("compute.sim_device", name, f"one of {SIM_DEVICES}")
    if name == "cpu":
        return
    if importlib.util.find_spec("cupy") is None:
        raise ConfigError("compute.sim_device", name,
                          "cpu: CuPy is not installed (pip install -e '.[gpu]' on a CUDA machine)")
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CuPy without a driver raises its own runtime errors
        raise ConfigError("compute.sim_device", name, f"cpu: CuPy sees no GPU ({exc})") from exc
    if count < 1:
        raise ConfigError("compute.sim_device", name, "cpu: CuPy sees no CUDA device")


def abtem_settings(sim_device: str = "cpu") -> dict[str, Any]:
    """The abTEM configuration of a simulation: deterministic FFTs, on ``sim_device``."""
    return ABTEM_SETTINGS | {"device": sim_device}


def _configure_abtem(settings: dict[str, Any]) -> None:
    abtem.config.set(settings)


def _settings_plugin(settings: dict[str, Any]) -> Any:
    """A dask ``WorkerPlugin``: every worker (also one started to replace a lost one) runs
    abTEM with ``settings``."""
    from distributed import WorkerPlugin

    class AbtemSettings(WorkerPlugin):
        name = "ptychobench-abtem"

        def setup(self, worker: Any) -> None:
            _configure_abtem(settings)

    return AbtemSettings()


@contextlib.contextmanager
def executor(cfg: ComputeConfig) -> Iterator[Any]:
    """A ``distributed.Client`` for ``dask_local`` (a ``LocalCluster`` of ``cfg.workers``
    processes, closed on exit) or ``dask`` (the scheduler at ``cfg.address``), None for
    ``local``; abTEM is configured by :func:`abtem_settings` here and on the workers."""
    check_compute(cfg)
    settings = abtem_settings(cfg.sim_device)
    with abtem.config.set(settings):
        if cfg.name == "local":
            yield None
            return
        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.WARNING)  # not Hydra's INFO

        with contextlib.ExitStack() as stack:
            if cfg.name == "dask_local":
                cluster = stack.enter_context(LocalCluster(
                    n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                    processes=True, dashboard_address=None))
                client = stack.enter_context(Client(cluster))
            else:
                client = stack.enter_context(Client(cfg.address))
            client.register_plugin(_settings_plugin(settings))
            yield client


def to_numpy(block: Any) -> np.ndarray:
    """A block as a numpy array (CuPy blocks of a GPU simulation are copied to the host)."""
    return block.get() if hasattr(block, "get") and not isinstance(block, np.ndarray) else block


def store(lazy: da.Array, target: Any, client: Any = None, progress: bool = False,
          label: str = "abTEM") -> None:
    """Compute ``lazy`` into ``target`` (a zarr array of the same shape and chunks on axis 0
    one item) chunk by chunk: with ``client`` every chunk is a task on the cluster writing its
    own part of ``target``; without, one item of axis 0 (a tilt) after another with dask's
    threaded scheduler (the memory of one tilt)."""
    lazy = lazy.map_blocks(to_numpy, dtype=lazy.dtype).rechunk(target.chunks)
    if client is None:
        for j in progress_bar(range(lazy.shape[0]), f"{label} tilts", progress):
            target[j] = lazy[j].compute(scheduler="threads")
        return
    from distributed import as_completed

    rest = (slice(None),) * (lazy.ndim - 1)
    parts = [da.store(lazy[j:j + 1], target, regions=(slice(j, j + 1), *rest), lock=False,
                      compute=False) for j in range(lazy.shape[0])]
    futures = client.compute(parts)
    for _ in progress_bar(as_completed(futures), f"{label} tilts on dask", progress):
        pass
    client.gather(futures)  # raises the error of a task that failed for good
