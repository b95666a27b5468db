"""Build and simulation cost and dataset size of every phantom preset (issue 6).

    OMP_NUM_THREADS=1 python benchmarks/bench_phantoms.py [--samples ...] [--scales ci small paper]
        [--run-small]

``ci`` is built and simulated in full through :func:`simulate.pipeline.load_dataset` (a fresh
cache), timing the model build (MD, growth) and the simulation separately, and measuring the
stored dataset. ``small`` and ``paper`` are built (their MD and growth are timed) but not
simulated: their multislice cost is estimated from one tilt and one configuration on
``N_SHORT`` and ``N_LONG`` scan positions after a warm-up (a fixed cost per configuration, the
potential, plus a cost per position), extrapolated to every position, configuration and tilt.
When the potential grid is above ``MAX_GRID`` points, the per-position cost is scaled from the
sample's previous estimate (``small``) by slices × grid points × log(grid points). PRISM presets
are estimated as one multislice per plane wave of the S-matrix (whose memory is reported).
Dataset sizes of estimated presets count patterns, HAADF and the truth potential as float32,
uncompressed. ``--run-small`` simulates ``small`` in full instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np
from bench_simulate import du, preset_config  # same folder: run as a script

from simulate.config import SimulationConfig
from simulate.models import build_model
from simulate.physics import wavelength
from simulate.pipeline import load_dataset
from simulate.tiltseries import scan_grid, simulate_tilt
from simulate.validate import validate_simulation

PHANTOMS = (
    "ptal2o3",
    "srtio3",
    "srtio3_gradient",
    "cu_pair",
    "si_sigma9",
    "pt_decahedron",
    "asi_particle",
)
N_SHORT, N_LONG = 2, 8
MAX_GRID = 1024**2


@dataclasses.dataclass
class Geometry:
    """What the cost scales with: tilts, configurations, positions, slices, grid points."""

    tilts: int
    configs: int
    positions: int
    scan: tuple[int, int]
    slices: int
    grid: int
    detector: int  # pixels per pattern (0 without the pixelated detector)

    def work(self) -> float:
        """Multislice work of one position and configuration: slices × G log G."""
        return self.slices * self.grid * np.log2(self.grid)


def geometry(sim: SimulationConfig, atoms) -> Geometry:
    """Cost geometry of a preset (grid and detector sizes as abTEM chooses them)."""
    cell = np.diag(atoms.cell.array)
    grid, shape = scan_grid(sim.scan, cell)
    tilts = len(sim.tilts.angles) if sim.tilts.angles is not None else sim.tilts.count
    snaps = atoms.info.get("snapshots")
    configs = len(snaps) if snaps is not None else max(sim.phonons.num_configs, 1)
    gpts = np.ceil(cell[:2] / sim.potential.sampling)
    ang = 1e3 * wavelength(sim.microscope.energy) / cell[:2]
    det = (
        int(np.prod(2 * np.floor(sim.detector.max_angle / ang) + 1))
        if sim.detector.pixelated
        else 0
    )
    slices = int(np.ceil(cell[2] / sim.potential.slice_thickness))
    return Geometry(tilts, configs, len(grid), shape, slices, int(np.prod(gpts)), det)


def dataset_bytes(g: Geometry, sim: SimulationConfig, cell: np.ndarray) -> float:
    """Uncompressed float32 size of patterns, HAADF and the truth potential."""
    voxels = np.prod(np.ceil(cell / sim.truth.voxel_size - 1e-6))
    per_tilt = g.positions * (g.detector + (1 if sim.detector.adf else 0))
    return 4.0 * (g.tilts * per_tilt + voxels)


def _built(scale: str, sample: str) -> tuple[SimulationConfig, object, float, Geometry]:
    """The preset's config, its model (build timed, s), validated, and its cost geometry."""
    sim = preset_config(scale, sample)
    t0 = time.perf_counter()
    atoms = build_model(sim.sample)
    build_s = time.perf_counter() - t0
    validate_simulation(sim, np.diag(atoms.cell.array))
    return sim, atoms, build_s, geometry(sim, atoms)


def _result(atoms, build_s: float, sim_s: float, size: float, g: Geometry, **extra) -> dict:
    """One preset's row: atoms, build and simulation seconds, dataset bytes, geometry."""
    row = {"atoms": len(atoms), "build_s": build_s, "sim_s": sim_s, "bytes": size, "geo": g}
    return row | extra


def run_full(scale: str, sample: str) -> dict:
    """Build, then simulate and store in a fresh cache; times and the stored size."""
    sim, atoms, build_s, g = _built(scale, sample)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = load_dataset(sim, tmp, progress=False)
        total = time.perf_counter() - t0
        size = du(ds.path)
        shape = ds.meta["detector_shape"]
    g = dataclasses.replace(g, detector=int(np.prod(shape)) if shape else 0)
    # load_dataset builds the model twice more (validation, simulation); the MD is memoised
    sim_s = max(total - (0.0 if sample == "si_sigma9" else 2 * build_s), 0.0)
    return _result(atoms, build_s, sim_s, size, g, estimated=False)


def _one_config(atoms, sim: SimulationConfig) -> tuple:
    """The model with one static configuration, and a config simulating it alone."""
    one = atoms.copy()
    one.info.pop("snapshots", None)
    static = dataclasses.replace(sim, phonons=dataclasses.replace(sim.phonons, num_configs=0))
    return one, static


def _timed_positions(atoms, sim: SimulationConfig, n: int) -> float:
    """Seconds of one tilt, one configuration, ``n`` positions of the preset's raster."""
    grid, _ = scan_grid(sim.scan, np.diag(atoms.cell.array))
    pick = grid[np.linspace(0, len(grid) - 1, n).astype(int)]
    t0 = time.perf_counter()
    simulate_tilt(atoms, sim, np.zeros(3), np.zeros(2), pick, seed=0)
    return time.perf_counter() - t0


def estimate(scale: str, sample: str, rate: float | None) -> dict:
    """Build (timed), then estimate the simulation time and dataset size without running it."""
    sim, atoms, build_s, g = _built(scale, sample)
    note = ""
    if sim.method.name == "prism":
        m = sim.microscope
        cell = np.diag(atoms.cell.array)
        k = m.semiangle * 1e-3 / wavelength(m.energy)
        waves = np.pi * k**2 * np.prod(cell[:2]) / sim.method.prism_interpolation**2
        note = f"PRISM: ~{waves:,.0f} plane waves, S-matrix {waves * g.grid * 8 / 1e9:,.0f} GB"
        sim_s = g.tilts * g.configs * waves * (rate or np.nan) * g.work()
    elif g.grid <= MAX_GRID:
        one, static = _one_config(atoms, sim)
        _timed_positions(one, static, 1)  # warm-up (imports, JIT, caches)
        short, long = (_timed_positions(one, static, n) for n in (N_SHORT, N_LONG))
        per_pos = max(long - short, 0.0) / (N_LONG - N_SHORT)
        fixed = max(short - N_SHORT * per_pos, 0.0)
        sim_s = g.tilts * g.configs * (fixed + per_pos * g.positions)
        rate = per_pos / g.work()
    else:
        sim_s = g.tilts * g.configs * g.positions * g.work() * (rate or np.nan)
        note = "per-position cost scaled from small (grid above MAX_GRID)"
    size = dataset_bytes(g, sim, np.diag(atoms.cell.array))
    return _result(atoms, build_s, sim_s, size, g, estimated=True, note=note, rate=rate)


def row(sample: str, scale: str, r: dict) -> str:
    """One Markdown table row."""
    g: Geometry = r["geo"]
    est = "~" if r["estimated"] else ""
    sim_s = r["sim_s"]
    when = f"{sim_s:.1f} s" if sim_s < 3600 else f"{sim_s / 3600:,.1f} h"
    size = r["bytes"] / 1e6
    size_s = f"{size:.2f} MB" if size < 1e3 else f"{size / 1e3:,.1f} GB"
    patterns = f"{g.tilts}×{g.scan[0]}×{g.scan[1]}×{g.configs}"
    return (
        f"| {sample} | {scale} | {r['atoms']:,} | {r['build_s']:.1f} s | {est}{when} | "
        f"{patterns} | {g.detector:,} | {est}{size_s} | {r.get('note', '')} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", nargs="+", default=list(PHANTOMS))
    ap.add_argument("--scales", nargs="+", default=["ci", "small", "paper"])
    ap.add_argument("--run-small", action="store_true", help="simulate small in full")
    args = ap.parse_args()
    print(
        "| sample | scale | atoms | build (CPU) | simulation (CPU) | tilts×scan×configs "
        "| pattern px | dataset | note |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for sample in args.samples:
        rate = None
        for scale in args.scales:
            full = scale == "ci" or (scale == "small" and args.run_small)
            r = run_full(scale, sample) if full else estimate(scale, sample, rate)
            rate = r.get("rate", rate)
            print(row(sample, scale, r), flush=True)


if __name__ == "__main__":
    main()
