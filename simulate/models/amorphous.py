"""Paper 004's amorphous phantoms: Si particles of ``n_atoms`` atoms whose interatomic distances
are constrained to [2.32, 2.53] Å.

Algorithm (random sequential growth, after Bridson's Poisson-disc sampling): the first atom
sits at the origin and is "active". Repeatedly, the active atom closest to the origin proposes
``attempts`` random positions uniformly in the spherical shell ``d_min ≤ r ≤ d_max`` around
itself; candidates closer than ``d_min`` to any atom are rejected (hash grid of cell
``d_min/√3``, at most one atom per cell); of the others, the one closest to the origin is
added and becomes active. An active atom with no valid candidate retires. So every atom has
its nearest neighbour in [``d_min``, ``d_max``] (the atom that spawned it is within ``d_max``),
no two atoms are closer than ``d_min``, and growing from the innermost active atom keeps the
particle a compact, roughly spherical blob. The result is centred (centroid) in a cubic cell.

Paper 004: 25,000 atoms in a 9 nm particle (0.066 atoms/Å³); this growth packs about
0.063 atoms/Å³, so 25,000 atoms make a particle of about 9.1 nm (radius of the sphere with the
same radius of gyration). Cost: about 1 ms per atom (25,000 atoms in ~25 s).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from simulate.errors import ConfigError
from simulate.models.common import centred_in_cube
from simulate.models.registry import SampleConfig, register_model

_STENCIL = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)


@dataclass
class AmorphousSiConfig(SampleConfig):
    """Amorphous particle of ``n_atoms`` atoms of ``species`` with nearest-neighbour distances
    in [``d_min``, ``d_max``] Å (paper 004: Si, 2.32-2.53 Å, M1 = 25,000 atoms, 9 nm) in a cube
    of ``cell`` Å; ``attempts`` candidates per growth step."""

    name: str = "asi_particle"
    cell: float = 102.4
    n_atoms: int = 25000
    d_min: float = 2.32
    d_max: float = 2.53
    attempts: int = 30
    species: str = "Si"


class _Grid:
    """Hash grid with at most one atom per cubic cell of side ``d_min/√3`` (Å)."""

    def __init__(self, n_atoms: int, d_min: float) -> None:
        self.h = d_min / np.sqrt(3)
        radius = 1.5 * (3 * n_atoms / (4 * np.pi * 0.05)) ** (1 / 3) + 10 * d_min
        self.n = int(np.ceil(2 * radius / self.h)) + 5
        self.slots = np.full((self.n,) * 3, -1, dtype=np.int64)
        self.d_min = d_min

    def index(self, pts: NDArray[np.float64]) -> NDArray[np.int64]:
        """Cell indices ``[M, 3]`` of positions (Å, origin at the grid centre)."""
        return np.floor(pts / self.h).astype(np.int64) + self.n // 2

    def free(self, cand: NDArray[np.float64], pos: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which candidates ``[M, 3]`` are at least ``d_min`` from every stored atom."""
        idx = self.index(cand)[:, None, :] + _STENCIL[None]
        inside = np.all((idx >= 0) & (idx < self.n), axis=(1, 2))
        idx = np.clip(idx, 0, self.n - 1)
        nb = self.slots[idx[..., 0], idx[..., 1], idx[..., 2]]  # [M, 125]
        d = np.linalg.norm(pos[np.maximum(nb, 0)] - cand[:, None, :], axis=-1)
        return inside & np.all((nb < 0) | (d >= self.d_min), axis=1)

    def add(self, k: int, p: NDArray[np.float64]) -> None:
        """Store atom ``k`` at ``p``."""
        i, j, m = self.index(p[None])[0]
        self.slots[i, j, m] = k


def _shell_points(
    rng: np.random.Generator, centre: NDArray, n: int, r0: float, r1: float
) -> NDArray[np.float64]:
    """``n`` points uniform in the spherical shell r0 ≤ r ≤ r1 around ``centre`` (Å)."""
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = (r0**3 + rng.random(n) * (r1**3 - r0**3)) ** (1 / 3)
    return centre + v * r[:, None]


def grow(
    n_atoms: int, d_min: float, d_max: float, attempts: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Positions ``[n_atoms, 3]`` (Å, about the origin) grown as in the module docstring."""
    pos = np.zeros((n_atoms, 3))
    grid = _Grid(n_atoms, d_min)
    grid.add(0, pos[0])
    active: list[tuple[float, int]] = [(0.0, 0)]
    count = 1
    while count < n_atoms:
        if not active:
            raise ConfigError("sample.n_atoms", n_atoms, f"<= {count}: the growth got stuck")
        k = active[0][1]
        cand = _shell_points(rng, pos[k], attempts, d_min, d_max)
        ok = grid.free(cand, pos[:count])
        if not ok.any():
            heapq.heappop(active)
            continue
        cand = cand[ok]
        r = np.linalg.norm(cand, axis=1)
        best = int(np.argmin(r))
        pos[count] = cand[best]
        grid.add(count, cand[best])
        heapq.heappush(active, (float(r[best]), count))
        count += 1
    return pos


@register_model("asi_particle", AmorphousSiConfig)
def build_asi_particle(cfg: AmorphousSiConfig) -> Atoms:
    """Amorphous particle centred (centroid) in a cube of ``cfg.cell`` Å."""
    if cfg.n_atoms < 2:
        raise ConfigError("sample.n_atoms", cfg.n_atoms, "at least 2 atoms")
    if not 0 < cfg.d_min < cfg.d_max:
        raise ConfigError("sample.d_min/d_max", (cfg.d_min, cfg.d_max), "0 < d_min < d_max")
    if cfg.attempts < 1:
        raise ConfigError("sample.attempts", cfg.attempts, "at least 1")
    rng = np.random.default_rng(cfg.seed)
    pos = grow(int(cfg.n_atoms), cfg.d_min, cfg.d_max, int(cfg.attempts), rng)
    pos -= pos.mean(axis=0)
    return centred_in_cube([cfg.species] * len(pos), pos, cfg.cell, "sample.n_atoms")
