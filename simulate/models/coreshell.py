"""Paper 000's phantom: a Pt@Al2O3 core-shell nanocube.

The core is the fcc Pt lattice (a = 3.92 Å) inside a cube of edge ``core_edge`` Å about the
origin ({100} facets, an atom at the centre). The shell fills the cube of edge
``core_edge + 2·shell_thickness`` outside the core cube with Al2O3, either

- ``corundum``: α-Al2O3 (R-3c, a = 4.759 Å, c = 12.991 Å, Al at (0, 0, 0.35216), O at
  (0.30624, 0, 1/4); c along z), shifted by a random fraction of its unit cell (from ``seed``)
  relative to the core; or
- ``amorphous``: random sequential addition of points at ``amorphous_density`` g/cm³ (2 Al per
  3 O, species shuffled), each accepted only at ≥ ``min_distance`` from every other atom.

No two atoms end up closer than ``min_distance`` Å (default 1.8): shell atoms too close to the
core are rejected, then shell atoms too close to an earlier shell atom (corundum itself has
Al-O 1.855 Å, so at the default only the interface is thinned). A cube cut from corundum is not
stoichiometric (its Al and O layers, c/6 apart, cross the faces unevenly: ±10 % in Al/O for a
20 Å cube), so the outermost atoms of the species in excess are removed until Al:O = 2:3.
``region`` is 0 for the core and 1 for the shell. The paper does not give the sizes; its
107 × 107 scan at 0.3 Å covers 32 Å, so the default is a 15.68 Å (4 a) core with a 3 Å shell
(21.7 Å cube, whose projection at ±45° is 30.7 Å wide) in a 51.2 Å cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.spacegroup import crystal
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from simulate.errors import ConfigError
from simulate.models.common import FCC_BASIS, centred_in_cube, lattice_points
from simulate.models.registry import SampleConfig, register_model

SHELLS = ("corundum", "amorphous")
AL2O3_MASS = 101.961  # g/mol per formula unit (5 atoms)
AVOGADRO = 6.02214076e23


@dataclass
class PtAl2O3Config(SampleConfig):
    """Pt cube of edge ``core_edge`` Å (fcc ``lattice_constant``) in an Al2O3 shell of
    ``shell_thickness`` Å (``shell``: corundum | amorphous, the latter at
    ``amorphous_density`` g/cm³); no two atoms closer than ``min_distance`` Å."""

    name: str = "ptal2o3"
    cell: float = 51.2
    core_edge: float = 15.68
    shell_thickness: float = 3.0
    shell: str = "corundum"
    min_distance: float = 1.8
    lattice_constant: float = 3.92
    amorphous_density: float = 3.0


def _in_cube(pts: NDArray[np.float64], half: float) -> NDArray[np.bool_]:
    """Points (Å) with all |coordinates| <= ``half`` (+1e-6)."""
    return np.all(np.abs(pts) <= half + 1e-6, axis=1)


def corundum_points(
    half: float, rng: np.random.Generator
) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Corundum symbols and positions (Å) filling the cube ``|x|, |y|, |z| <= half``."""
    unit = crystal(
        ["Al", "O"],
        basis=[(0.0, 0.0, 0.35216), (0.30624, 0.0, 0.25)],
        spacegroup=167,
        cellpar=[4.759, 4.759, 12.991, 90, 90, 120],
    )
    cell = unit.cell.array
    shift = rng.random(3) @ cell
    n = np.ceil(2 * half / np.array([4.759 * np.sqrt(3) / 2, 4.759 * np.sqrt(3) / 2, 12.991]))
    n = n.astype(int) + 2
    ijk = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1).reshape(
        -1, 1, 3
    )
    pos = (ijk @ cell + unit.positions[None]).reshape(-1, 3) - shift
    symbols = np.tile(unit.get_chemical_symbols(), len(ijk))
    keep = _in_cube(pos, half)
    return symbols[keep], pos[keep]


def _greedy_thin(pos: NDArray[np.float64], dmin: float) -> NDArray[np.bool_]:
    """Keep-mask removing, for each pair closer than ``dmin``, its later point."""
    keep = np.ones(len(pos), dtype=bool)
    if len(pos) < 2:
        return keep
    pairs = cKDTree(pos).query_pairs(dmin, output_type="ndarray")
    for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:
        if keep[i] and keep[j]:
            keep[j] = False
    return keep


def amorphous_points(
    core: NDArray[np.float64],
    half_in: float,
    half_out: float,
    cfg: PtAl2O3Config,
    rng: np.random.Generator,
) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Random Al2O3 shell between the cubes of half-edges ``half_in`` and ``half_out`` (Å)."""
    volume = (2 * half_out) ** 3 - (2 * half_in) ** 3
    n_target = int(round(5 * cfg.amorphous_density / AL2O3_MASS * AVOGADRO * 1e-24 * volume))
    core_tree = cKDTree(core)
    pos = np.zeros((0, 3))
    for _ in range(400):
        if len(pos) >= n_target:
            break
        cand = rng.uniform(-half_out, half_out, (4 * n_target + 64, 3))
        cand = cand[~_in_cube(cand, half_in)]
        cand = cand[core_tree.query(cand)[0] >= cfg.min_distance]
        if len(pos):
            cand = cand[cKDTree(pos).query(cand)[0] >= cfg.min_distance]
        cand = cand[_greedy_thin(cand, cfg.min_distance)]
        pos = np.concatenate([pos, cand[: n_target - len(pos)]])
    if len(pos) < n_target:
        raise ConfigError(
            "sample.amorphous_density",
            cfg.amorphous_density,
            f"a density reachable with min_distance {cfg.min_distance} Å (got {len(pos)} of "
            f"{n_target} atoms)",
        )
    n_al = int(round(0.4 * n_target))
    symbols = np.array(["Al"] * n_al + ["O"] * (n_target - n_al))
    return symbols[rng.permutation(n_target)], pos


def _check(cfg: PtAl2O3Config) -> None:
    """Positive sizes and a known shell type."""
    if cfg.shell not in SHELLS:
        raise ConfigError("sample.shell", cfg.shell, f"one of {SHELLS}")
    for key in ("core_edge", "lattice_constant", "min_distance", "amorphous_density"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"sample.{key}", getattr(cfg, key), "a positive value")
    if cfg.shell_thickness < 0:
        raise ConfigError("sample.shell_thickness", cfg.shell_thickness, "a thickness >= 0 Å")


def stoichiometric(
    sym: NDArray[np.str_], pos: NDArray[np.float64]
) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Drop the outermost (largest max |coordinate|) atoms of the species in excess so that
    n_Al : n_O = 2 : 3 (to one atom); positions in Å about the cube centre."""
    n_al, n_o = int((sym == "Al").sum()), int((sym == "O").sum())
    excess, n_drop = (
        ("Al", n_al - (2 * n_o) // 3) if 3 * n_al > 2 * n_o else ("O", n_o - (3 * n_al) // 2)
    )
    if n_drop <= 0:
        return sym, pos
    depth = np.abs(pos).max(axis=1)
    candidates = np.flatnonzero(sym == excess)
    drop = candidates[np.argsort(-depth[candidates], kind="stable")[:n_drop]]
    keep = np.ones(len(sym), dtype=bool)
    keep[drop] = False
    return sym[keep], pos[keep]


@register_model("ptal2o3", PtAl2O3Config)
def build_ptal2o3(cfg: PtAl2O3Config) -> Atoms:
    """Pt@Al2O3 nanocube centred in its cubic cell; ``arrays['region']`` 0 core, 1 shell."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    half_in, half_out = cfg.core_edge / 2, cfg.core_edge / 2 + cfg.shell_thickness
    core = lattice_points(FCC_BASIS, cfg.lattice_constant, half_in * np.sqrt(3) + 1.0)
    core = core[_in_cube(core, half_in)]
    if cfg.shell == "corundum":
        sym, shell = corundum_points(half_out, rng)
        outside = ~_in_cube(shell, half_in)
        sym, shell = sym[outside], shell[outside]
        far = cKDTree(core).query(shell)[0] >= cfg.min_distance
        sym, shell = sym[far], shell[far]
        keep = _greedy_thin(shell, cfg.min_distance)
        sym, shell = stoichiometric(sym[keep], shell[keep])
    else:
        sym, shell = amorphous_points(core, half_in, half_out, cfg, rng)
    symbols = np.concatenate([np.full(len(core), "Pt"), sym])
    atoms = centred_in_cube(symbols, np.concatenate([core, shell]), cfg.cell, "sample.cell")
    atoms.set_array("region", np.repeat([0, 1], [len(core), len(shell)]).astype(np.int64))
    return atoms
