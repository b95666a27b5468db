"""Patterns larger than memory (``reconstruct/stream.py``, ``compute.max_memory_gb``).

Staged block by block, the noisy patterns are bitwise those of the in-memory path (Poisson
draws of consecutive C-order blocks from one generator are the draw over the whole array), a
reconstruction from them is identical, any use that needs them whole is refused by name, and a
fresh process that streams 4x more patterns than its limit stays far below their size in peak
memory while the in-memory path exceeds it.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from reconstruct.data import from_dataset, subsample_rows
from reconstruct.stream import StreamedPatternsError, ZarrPatterns
from reconstruct.variants import variant_params
from simulate.config import NoiseConfig, ScanConfig, SimulationConfig
from simulate.errors import ConfigError
from simulate.noise import apply_dose, dose_sampler
from simulate.store import Dataset, write_dataset
from simulate.tiltseries import TiltSeries

V = 0.4  # Å
CPU = torch.device("cpu")
NOISY = NoiseConfig(dose=2e5, per="tilt", seed=5)  # ~0.3 electrons per pixel of the small set
ROOT = Path(__file__).resolve().parents[1]


def synthetic(path: Path, tilts: int, scan: tuple[int, int], k: tuple[int, int],
              grid: tuple[int, int, int], seed: int = 0) -> Dataset:
    """A dataset written through the store without abTEM: random patterns ``[T, sx, sy, kx,
    ky]`` (per electron, about 2/3 in all, a third of the pixels lit) on a raster over the
    cell, detector sampling 1 / cell (so that ``from_dataset`` crops them to the grid)."""
    rng = np.random.default_rng(seed)
    sx, sy = scan
    step = grid[1] * V / sx
    g = np.stack(np.meshgrid(np.arange(sx) * step, np.arange(sy) * step, indexing="ij"), -1)
    pos = np.broadcast_to(g.reshape(1, -1, 2), (tilts, sx * sy, 2)).copy()
    diff = rng.random((tilts, sx, sy, *k), dtype=np.float32)  # a third of the pixels lit
    diff = np.where(diff > 2 / 3, diff - np.float32(2 / 3), 0).astype(np.float32) * np.float32(
        12 / math.prod(k))
    euler = np.zeros((tilts, 3))
    euler[:, 1] = np.linspace(-30.0, 30.0, tilts)
    ts = TiltSeries(diffraction=diff, haadf=None, euler_deg=euler, euler_nominal_deg=euler,
                    shifts=np.zeros((tilts, 2)), positions=pos, positions_nominal=pos,
                    angular_sampling=np.ones(2), reciprocal_sampling=1 / (np.array(grid[1:]) * V),
                    potential=np.zeros(grid, np.float32), voxel_size=V, origin=np.zeros(3))
    cfg = SimulationConfig(scan=ScanConfig(step=step))
    write_dataset(path, ts, Atoms("Cu", positions=[[1.0, 1.0, 1.0]]), cfg, "synthetic")
    return Dataset(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """3 tilts of a 7 x 5 scan, 20 x 18 patterns cropped to the 16 x 16 grid."""
    return synthetic(tmp_path_factory.mktemp("stream") / "small", 3, (7, 5), (20, 18),
                     (4, 16, 16))


@pytest.mark.parametrize("electrons", [float("inf"), 0.7, 30.0])
def test_poisson_drawn_block_by_block_is_the_draw_over_the_whole_array(electrons):
    """Consecutive C-order blocks (tilt-major, runs of whole scan rows, uneven) from one
    sampler give bitwise apply_dose's counts; λ spans 0, the inversion (< 10) and the
    rejection (>= 10) samplers. Out of order they differ (the test can fail)."""
    rng = np.random.default_rng(1)
    intensity = (rng.exponential(1.0, (3, 7, 5, 6, 4)) * (rng.random((3, 7, 5, 6, 4)) > 0.3)
                 ).astype(np.float32)
    whole = apply_dose(intensity, electrons, seed=11)
    draw = dose_sampler(electrons, seed=11)
    blocks = [draw(intensity[t, r:r + rows]) for t in range(3) for r, rows in
              ((0, 3), (3, 1), (4, 3))]
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks).reshape(whole.shape), whole)
    if not math.isinf(electrons):
        draw = dose_sampler(electrons, seed=11)
        backwards = [draw(intensity[t]) for t in (2, 1, 0)][::-1]
        assert not np.array_equal(np.stack(backwards), whole)
    with pytest.raises(ValueError, match="> 0"):
        dose_sampler(0.0, seed=11)


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


@pytest.mark.parametrize("noise", [NOISY, NoiseConfig()], ids=["noisy", "noise-free"])
def test_streamed_patterns_are_bitwise_the_in_memory_tensor(small, noise):
    mem = from_dataset(small, noise, CPU, realisation=1)
    data = from_dataset(small, noise, CPU, realisation=1, max_memory_gb=1e-6)
    p, ref = data.patterns, mem.patterns
    assert isinstance(p, ZarrPatterns) and isinstance(ref, torch.Tensor)
    assert (p.shape, p.dtype, p.device, p.dim(), p.ndim, len(p)) == (
        ref.shape, ref.dtype, ref.device, ref.dim(), ref.ndim, len(ref)) and p.shape[1] == 35
    assert data.kinds == mem.kinds and torch.equal(data.positions, mem.positions)
    gen = torch.Generator().manual_seed(0)
    for t in (0, 1, 2, -1):
        idx = torch.randint(-35, 35, (23,), generator=gen)  # repeats, negatives, any order
        for key in (t, (t, idx), (t, idx.numpy()), (t, slice(4, 30, 3)), (t, 7), (t, -2),
                    (t, torch.tensor(3)), (t, idx[:0])):
            got = p[key]
            assert got.dtype == torch.float32 and got.shape == ref[key].shape, key
            assert torch.equal(_bits(got), _bits(ref[key])), key
    if noise is NOISY:  # noisy indeed, and the other realisation differs
        assert not torch.equal(ref, from_dataset(small, noise, CPU).patterns)
    big_enough = from_dataset(small, noise, CPU, realisation=1, max_memory_gb=1.0)
    assert isinstance(big_enough.patterns, torch.Tensor)  # under the limit: in memory


def test_operations_that_need_the_patterns_whole_are_refused_by_name(small):
    data = from_dataset(small, NOISY, CPU, max_memory_gb=1e-6)
    p = data.patterns
    uses = [lambda: p.reshape(3, -1), lambda: p.sum(), lambda: p + 1, lambda: 2 * p, lambda: p > 0,
            lambda: torch.ones(1) * p, lambda: torch.stack([p]), lambda: np.asarray(p),
            lambda: list(p), lambda: p[:, 0], lambda: p[0, :, 1], lambda: p.to(CPU),
            lambda: p[0, torch.ones(35, dtype=torch.bool)], lambda: subsample_rows(data, 2, 0)]
    for use in uses:
        with pytest.raises(StreamedPatternsError, match=r"compute\.max_memory_gb = 1e-06"):
            use()
    with pytest.raises(IndexError):
        p[3]
    with pytest.raises(IndexError):
        p[0, torch.tensor([0, 35])]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1", True])
def test_max_memory_gb_is_checked_before_any_compute(bad):
    class Untouched:  # any use of the dataset would fail
        pass

    with pytest.raises(ConfigError, match=r"compute\.max_memory_gb.*null or a number > 0"):
        from_dataset(Untouched(), NOISY, CPU, max_memory_gb=bad)


def test_the_scratch_store_lies_beside_the_dataset_and_goes_with_the_patterns(small):
    data = from_dataset(small, NOISY, CPU, max_memory_gb=1e-6)
    root = Path(data.patterns.array.store.root)
    assert root.is_dir() and root.parent == small.path.parent
    assert root.name.startswith(".ptychobench-stream-")
    del data
    gc.collect()
    assert not root.exists()


def test_mset_from_streamed_patterns_is_identical(small):
    variant, cfg = variant_params({"name": "mset", "iterations": 1, "batch_size": 12,
                                   "chunk_size": 5})  # line search: batches read repeatedly
    volumes = [variant.reconstruct(from_dataset(small, NOISY, CPU, max_memory_gb=m), cfg,
                                   seed=3).estimates()["volume"] for m in (None, 1e-6)]
    assert np.abs(volumes[0]).max() > 0
    np.testing.assert_array_equal(volumes[1], volumes[0])


PEAK = """
import dataclasses, json, sys, time
import numpy as np, torch
from reconstruct.data import TomoData, from_dataset
from reconstruct.variants import variant_params
from simulate.config import NoiseConfig
from simulate.store import Dataset

torch.set_num_threads(1)
# VmHWM, the peak RSS of this process image (ru_maxrss would count the forking parent's)
status = lambda key: 1024 * int(next(line.split()[1] for line in open("/proc/self/status")
                                     if line.startswith(key)))
peak, rss = lambda: status("VmHWM:"), lambda: status("VmRSS:")
ds, limit = Dataset(sys.argv[1]), None if sys.argv[2] == "none" else float(sys.argv[2])
variant, cfg = variant_params({"name": "mset", "iterations": 1, "optimizer": "adam",
                               "lr": 1.0, "batch_size": 256, "chunk_size": 64})
# warm up: torch's lazy set-up (FFT plans, autograd, ~70 MB) is no part of the measure
warm = TomoData((4, 32, 32), 0.4, torch.zeros(1, 3), torch.zeros(1, 2), 300e3, 0.02,
                {"C10": 0.0}, positions=torch.rand(1, 8, 2) * 12.8,
                patterns=torch.rand(1, 8, 32, 32))
variant.reconstruct(warm, cfg, seed=0)
before, start = rss(), time.perf_counter()
data = from_dataset(ds, NoiseConfig(dose=2e3, per="tilt", seed=1), "cpu", max_memory_gb=limit)
loaded, staged = time.perf_counter(), peak()
# one MSET iteration over the first tilt (its cost is per pattern; what it holds per batch
# does not depend on the tilts it visits)
first = dataclasses.replace(data, euler=data.euler[:1], shifts=data.shifts[:1],
                            positions=data.positions[:1])
volume = variant.reconstruct(first, cfg, seed=0).estimates()["volume"]
np.save(sys.argv[3], volume)
print(json.dumps({"increase": peak() - before, "load_increase": staged - before,
                  "before": before, "load_s": loaded - start,
                  "mset_s": time.perf_counter() - loaded, "kind": type(data.patterns).__name__}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_streaming_bounds_the_peak_memory_of_a_fresh_process(tmp_path):
    """20 tilts of 50 x 50 patterns, 34² cropped to 32²: 205 MB of float32 patterns, 4x
    max_memory_gb = 0.05. Streamed, the peak RSS of load + one MSET iteration grows by well
    under half the patterns' size (< 0.4x; staging whole tilts at a time reaches 0.5x); in
    memory (the control, run side by side) by more than their size; both give one volume."""
    start = time.perf_counter()
    ds = synthetic(tmp_path / "large", 20, (50, 50), (34, 34), (4, 32, 32), seed=2)
    size = 20 * 2500 * 32 * 32 * 4
    written = time.perf_counter() - start
    # zarr decompresses in a pool of threads, and glibc gives each its own arena, which keeps
    # the freed chunk buffers: a constant (~ threads x stored chunk, ~120 MB here) that does
    # not grow with the dataset; two arenas keep it out of the measure
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    runs = {limit: subprocess.Popen([sys.executable, "-c", PEAK, str(ds.path), limit,
                                     str(tmp_path / f"{limit}.npy")], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for limit in ("0.05", "none")}
    out = {}
    for limit, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        out[limit] = json.loads(stdout.strip().splitlines()[-1])
    out["write_s"], out["total_s"] = written, time.perf_counter() - start
    print(json.dumps(out))
    streamed, control = out["0.05"], out["none"]
    assert streamed["kind"] == "ZarrPatterns" and control["kind"] == "Tensor"
    assert streamed["increase"] < 0.4 * size, (streamed["increase"] / 1e6, size / 1e6)
    assert control["increase"] > size, (control["increase"] / 1e6, size / 1e6)
    np.testing.assert_array_equal(np.load(tmp_path / "0.05.npy"), np.load(tmp_path / "none.npy"))
    assert not list(tmp_path.glob(".ptychobench-stream-*"))  # removed at exit
