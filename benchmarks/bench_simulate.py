"""CPU time and dataset size of each simulation preset.

    python benchmarks/bench_simulate.py [--presets ci small paper] [--sample cuau]
    python benchmarks/bench_simulate.py --presets paper --sim-device gpu --positions 1024

``ci`` and ``small`` are simulated in full. ``paper`` is too large for a CPU run: one tilt with
one frozen-phonon configuration is simulated on a subset of scan positions, and the full time is
extrapolated linearly in positions × configurations × tilts (stated as an estimate).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.schema import register_configs
from simulate.pipeline import SECTIONS, load_dataset, prepare, simulation_config
from simulate.tiltseries import scan_grid, simulate_tilt

CONF = Path(__file__).resolve().parents[1] / "conf"


def preset_config(scale: str, sample: str):
    """The resolved simulation config of ``sample`` at ``scale`` (Hydra composition)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"scale={scale}", f"sample={sample}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    return simulation_config({k: plain[k] for k in ("sample", *SECTIONS)})


def du(path: Path) -> int:
    """Bytes under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def full_run(scale: str, sample: str) -> str:
    sim = preset_config(scale, sample)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = load_dataset(sim, tmp)
        dt = time.perf_counter() - t0
        shape = ds.array("measurements/diffraction").shape
        return f"{scale:>6} {sample}: {dt:8.1f} s CPU wall, {du(ds.path) / 1e6:9.1f} MB, {shape}"


def estimate_paper(sample: str, n_positions: int = 64, sim_device: str = "cpu") -> str:
    sim = preset_config("paper", sample)
    atoms = prepare(sim)
    grid, (sx, sy) = scan_grid(sim.scan, np.diag(atoms.cell.array))
    one = dataclasses.replace(sim, phonons=dataclasses.replace(sim.phonons, num_configs=1))
    pick = grid[np.linspace(0, len(grid) - 1, n_positions).astype(int)]
    if sim_device == "gpu":  # warm-up: CuPy's kernels and FFT plans are built on first use
        simulate_tilt(atoms, one, np.zeros(3), np.zeros(2), pick[:4], seed=0, sim_device="gpu")
    t0 = time.perf_counter()
    d, _, _ = simulate_tilt(atoms, one, np.zeros(3), np.zeros(2), pick, seed=0,
                            sim_device=sim_device)
    dt = time.perf_counter() - t0
    total = dt / n_positions * len(grid) * sim.phonons.num_configs * sim.tilts.count
    size = sim.tilts.count * sx * sy * d.shape[-1] * d.shape[-2] * 4
    return (f" paper {sample} ({sim_device}): {dt / n_positions * 1e3:.2f} ms per position per "
            f"configuration; estimated {total / 3600:.2f} {sim_device.upper()}-hours for "
            f"{sim.tilts.count} tilts × {sx}×{sy} × "
            f"{sim.phonons.num_configs} configs; {size / 1e9:.1f} GB uncompressed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["ci", "small", "paper"])
    ap.add_argument("--sample", default="cuau")
    ap.add_argument("--sim-device", default="cpu", choices=["cpu", "gpu"],
                    help="abTEM's device for the paper estimate (gpu: CuPy)")
    ap.add_argument("--positions", type=int, default=64, help="positions of the paper estimate")
    args = ap.parse_args()
    for scale in args.presets:
        line = (estimate_paper(args.sample, args.positions, args.sim_device) if scale == "paper"
                else full_run(scale, args.sample))
        print(line, flush=True)


if __name__ == "__main__":
    main()
