"""Paper 003's phantom: a Σ9 [110] symmetric tilt grain boundary in Si with an MD ensemble.

Geometry (lab frame, beam along z = [110]). The unrotated diamond crystal has x = [-110]/√2,
y = [001], z = [110]/√2. Grain 1 (x < 0) is rotated by -α and grain 2 (x > 0) by +α about z,
with α = atan(1/(2√2)) = 19.47°, so their misorientation is 2α = 38.94° about [110] (Σ9) and
the boundary plane x = 0 is the (2̄21) plane of grain 1 and the (2̄2 1̄) plane of grain 2: the
symmetric {221} tilt boundary. Grain 2 is the mirror image of grain 1 in the boundary plane.
The orthorhombic coincidence cell of one grain is 3a × (3/√2)a × a/√2 (36 atoms), so the
bicrystal is periodic with two equivalent boundaries at x = 0 and x = ±Lx/2.

Atoms closer than ``overlap`` Å across a boundary are merged (the pair is replaced by its
midpoint), the structure is relaxed with a Stillinger-Weber potential (written here in numpy:
ASE ships no Si potential that is both offline and vectorised), and then Langevin MD at
``temperature`` K gives ``n_snapshots`` snapshots spaced ``snapshot_interval`` steps apart after
``n_equilibration`` steps. MD is periodic along z too (a 7 Å slice of a thick bicrystal, as in
an MD cell of a TEM specimen); the result is put in a cell with vacuum above and below.

Outputs: ``atoms.positions`` = time-averaged positions, ``atoms.info["snapshots"]`` ``[S, N, 3]``
(Å; the simulator then uses each snapshot as one frozen-phonon configuration), both wrapped
into the cell laterally (a snapshot atom near a lateral cell edge may appear on the far side:
compare positions with the minimum-image convention), ``atoms.arrays['region']`` = grain
(0 or 1), ``truth_boundary_x`` (the x of the two boundaries, Å) and ``truth_md`` (temperature K,
timestep fs, equilibration steps, snapshot interval, static snapshot index).
With ``static_snapshot = k >= 0`` the model's positions are snapshot k alone (paper 003's
dataset without thermal diffuse scattering) and the ensemble is kept as truth only, under
``truth_snapshots`` (so the simulator does not use it).

Truth voxel grid: the lateral cell (6a × 3a/√2 per period) has an irrational aspect ratio, so no
cubic voxel tiles it. With ``commensurate_voxel = v > 0`` the bicrystal is strained uniformly
along x and y (before relaxation and MD) to the nearest whole number of voxels of v Å, and the
cell length along z is rounded up to a multiple of v; the strain is stored as
``truth_strain`` ``[2]`` and refused above :data:`MAX_STRAIN` (v = 0.3974 Å gives 0.003 % and
0.03 % for one period along y).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE
from numpy.typing import NDArray

from simulate.errors import ConfigError
from simulate.geometry import euler_matrix
from simulate.models.common import FCC_BASIS
from simulate.models.registry import SampleConfig, register_model

DIAMOND_BASIS = np.concatenate([FCC_BASIS, FCC_BASIS + 0.25])
SIGMA9_ANGLE = float(np.degrees(np.arctan(1 / (2 * np.sqrt(2)))))  # 19.47°, half of 38.94°
# rows: lab x, y, z of the unrotated crystal (right-handed)
MAX_STRAIN = 0.005
CRYSTAL_TO_LAB = np.array([[-1, 1, 0] / np.sqrt(2), [0, 0, 1], [1, 1, 0] / np.sqrt(2)])


class StillingerWeber(Calculator):
    """Stillinger-Weber potential (Phys. Rev. B 31, 5262 (1985)) for Si, vectorised with numpy.

    Energy in eV, forces in eV/Å. Standard Si parameters: ε = 2.1683 eV, σ = 2.0951 Å,
    a = 1.80 (cutoff aσ = 3.771 Å), λ = 21.0, γ = 1.20, A = 7.049556277, B = 0.6022245584,
    p = 4, q = 0, cos θ0 = -1/3. Diamond Si has its minimum at a = 5.431 Å, -4.3366 eV/atom.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    eps, sig, a_cut, lam, gam = 2.1683, 2.0951, 1.80, 21.0, 1.20
    big_a, big_b = 7.049556277, 0.6022245584

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Energy and forces of ``atoms`` (periodic along its ``pbc`` axes)."""
        super().calculate(atoms, properties, system_changes)
        rc = self.a_cut * self.sig
        i, j, dvec = neighbor_list("ijD", self.atoms, rc)
        r = np.linalg.norm(dvec, axis=1)
        forces = np.zeros((len(self.atoms), 3))
        e2 = self._two_body(i, j, dvec, r, forces)
        e3 = self._three_body(i, j, dvec, r, forces)
        self.results = {"energy": e2 + e3, "free_energy": e2 + e3, "forces": forces}

    def _two_body(self, i, j, dvec, r, forces) -> float:
        """Pair term; each pair appears twice in the neighbour list (i→j, j→i)."""
        s, rc = self.sig, self.a_cut * self.sig
        inv = s / r
        ex = np.exp(s / (r - rc))
        poly = self.big_b * inv**4 - 1.0
        phi = self.big_a * self.eps * poly * ex
        dpoly = -4 * self.big_b * inv**4 / r
        dphi = self.big_a * self.eps * ex * (dpoly - poly * s / (r - rc) ** 2)
        g = (0.5 * dphi / r)[:, None] * dvec  # dE_b/dD for the directed bond b
        _accumulate(forces, i, g)
        _accumulate(forces, j, -g)
        return float(0.5 * phi.sum())

    def _three_body(self, i, j, dvec, r, forces) -> float:
        """Angular term λε (cos θ_jik + 1/3)² g(r_ij) g(r_ik) over pairs j < k of neighbours."""
        b1, b2 = _bond_pairs(i)
        if len(b1) == 0:
            return 0.0
        s, rc = self.sig, self.a_cut * self.sig
        g = np.exp(self.gam * s / (r - rc))
        dg = -g * self.gam * s / (r - rc) ** 2
        d1, d2, r1, r2 = dvec[b1], dvec[b2], r[b1], r[b2]
        cos = np.sum(d1 * d2, axis=1) / (r1 * r2)
        c = cos + 1.0 / 3.0
        e = self.lam * self.eps * c**2 * g[b1] * g[b2]
        dc1 = d2 / (r1 * r2)[:, None] - (cos / r1**2)[:, None] * d1
        dc2 = d1 / (r1 * r2)[:, None] - (cos / r2**2)[:, None] * d2
        pre = self.lam * self.eps
        de1 = pre * (
            (2 * c * g[b1] * g[b2])[:, None] * dc1 + (c**2 * dg[b1] * g[b2] / r1)[:, None] * d1
        )
        de2 = pre * (
            (2 * c * g[b1] * g[b2])[:, None] * dc2 + (c**2 * g[b1] * dg[b2] / r2)[:, None] * d2
        )
        _accumulate(forces, j[b1], -de1)
        _accumulate(forces, j[b2], -de2)
        _accumulate(forces, i[b1], de1 + de2)
        return float(e.sum())


def _accumulate(forces: NDArray[np.float64], idx: NDArray, values: NDArray) -> None:
    """``forces[idx] += values`` with repeated indices summed."""
    n = len(forces)
    for k in range(3):
        forces[:, k] += np.bincount(idx, weights=values[:, k], minlength=n)


def _bond_pairs(i: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """All pairs (b1, b2), b1 < b2, of bonds sharing their first atom (``i`` sorted)."""
    counts = np.bincount(i)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    reps = counts[i]
    b1 = np.repeat(np.arange(len(i)), reps)
    offset = np.arange(len(b1)) - np.repeat(np.cumsum(reps) - reps, reps)
    b2 = start[i[b1]] + offset
    keep = b1 < b2
    return b1[keep], b2[keep]


def _grain(a: float, angle: float, box: NDArray[np.float64], offset: float) -> NDArray:
    """Diamond lattice rotated by ``angle`` (°) about z, shifted by ``offset`` (Å) along x, with
    positions in the half-open ``box`` = [[x0, x1], [y0, y1], [z0, z1]] (Å)."""
    reach = float(np.linalg.norm(np.abs(box).max(axis=1))) + 2 * a
    n = int(np.ceil(reach / a))
    r = np.arange(-n, n + 1)
    cells = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 1, 3)
    pts = ((cells + DIAMOND_BASIS[None]).reshape(-1, 3) * a) @ CRYSTAL_TO_LAB.T
    pts = pts @ euler_matrix(0.0, 0.0, angle).T + [offset, 0.0, 0.0]
    tol = 1e-6
    keep = np.all((pts >= box[:, 0] - tol) & (pts < box[:, 1] - tol), axis=1)
    return pts[keep]


def _merge_close(atoms: Atoms, cutoff: float) -> Atoms:
    """Replace each pair of atoms closer than ``cutoff`` Å by one atom at the pair's midpoint
    (minimum image), greedily in order of index."""
    i, j, d = neighbor_list("ijD", atoms, cutoff)
    pos, drop = atoms.positions.copy(), np.zeros(len(atoms), dtype=bool)
    for a_, b_, v in zip(i, j, d, strict=True):
        if a_ < b_ and not drop[a_] and not drop[b_]:
            pos[a_] += v / 2
            drop[b_] = True
    out = atoms[~drop]
    out.positions = pos[~drop]
    out.wrap()
    return out


def bicrystal(
    a: float, grain_periods: int, ny: int, n_layers: int, offset: float, overlap: float
) -> Atoms:
    """The unrelaxed periodic Σ9 bicrystal (see the module docstring), Si, cell
    ``[2 · grain_periods · 3a, ny · 3a/√2, n_layers · a/(2√2)]`` Å, boundaries at x = 0 and
    x = Lx/2 (positions wrapped into [0, L)); ``arrays['region']`` = grain index.

    Grain 2 is the mirror image of grain 1 (lattice shifted by ``offset`` Å along x) glided by
    half a coincidence period (3a/(2√2)) along y. With ``offset = 0`` this is the fully
    four-coordinated {221} boundary of 5- and 7-membered rings (Stillinger-Weber energy
    0.46 J/m² after relaxation; among 90 offsets and glides tried, none was lower).
    """
    lg, ly, lz = grain_periods * 3 * a, ny * 3 * a / np.sqrt(2), n_layers * a / (2 * np.sqrt(2))
    box = np.array([[-lg - 1e-3, 1e-3], [0.0, ly], [0.0, lz]])
    g1 = _grain(a, -SIGMA9_ANGLE, box, offset)
    g2 = g1 * [-1.0, 1.0, 1.0] + [0.0, 1.5 * a / np.sqrt(2), 0.0]
    pos = np.concatenate([g1, g2]) + [0.0, 0.0, a / (8 * np.sqrt(2))]
    atoms = Atoms("Si" * len(pos), positions=pos, cell=[2 * lg, ly, lz], pbc=True)
    atoms.set_array("region", np.repeat([0, 1], len(g1)))
    atoms.wrap()
    return _merge_close(atoms, overlap)


@dataclass
class SiSigma9Config(SampleConfig):
    """Σ9 [110] {221} tilt boundary in Si (paper 003: 7 Å = four (220) layers thick, 30 MD
    snapshots). Lateral cell ``2·grain_periods·3a × ny·3a/√2`` (paper: about 33 × 23 Å for its
    ~29 × 25 Å scan), ``n_layers`` (even) atomic layers of a/(2√2) = 1.92 Å along the beam,
    ``cell`` = cell length along z (Å), the slab centred. Merge threshold ``overlap`` (Å).
    MD: Stillinger-Weber, Langevin at ``temperature`` K, ``timestep`` fs, ``friction`` 1/fs,
    ``n_equilibration`` steps, then ``n_snapshots`` snapshots every ``snapshot_interval``
    steps (``n_snapshots = 0``: the relaxed static structure only). ``static_snapshot`` (-1 = the
    ensemble) and ``commensurate_voxel`` (Å, 0 = off) as in the module docstring."""

    name: str = "si_sigma9"
    cell: float = 16.0
    lattice_constant: float = 5.431
    grain_periods: int = 1
    ny: int = 2
    n_layers: int = 4
    offset: float = 0.0
    overlap: float = 1.5
    temperature: float = 300.0
    timestep: float = 2.0
    friction: float = 0.01
    n_equilibration: int = 1000
    n_snapshots: int = 30
    snapshot_interval: int = 50
    static_snapshot: int = -1
    commensurate_voxel: float = 0.0


def _check(cfg: SiSigma9Config) -> float:
    """Validate the sizes and MD settings; returns the slab thickness along z (Å)."""
    ints = ("grain_periods", "ny", "n_layers", "n_equilibration", "snapshot_interval")
    for key in ints:
        if int(getattr(cfg, key)) < (0 if key == "n_equilibration" else 1):
            raise ConfigError(f"sample.{key}", getattr(cfg, key), "a positive integer")
    if cfg.n_layers % 2:
        raise ConfigError("sample.n_layers", cfg.n_layers, "an even number (z periodicity)")
    if cfg.n_snapshots < 0:
        raise ConfigError("sample.n_snapshots", cfg.n_snapshots, "an integer >= 0")
    if not -1 <= cfg.static_snapshot < max(cfg.n_snapshots, 0):
        raise ConfigError(
            "sample.static_snapshot", cfg.static_snapshot, f"-1 or an index < {cfg.n_snapshots}"
        )
    if cfg.commensurate_voxel < 0:
        raise ConfigError("sample.commensurate_voxel", cfg.commensurate_voxel, "0 (off) or > 0 Å")
    for key in ("temperature", "timestep", "friction", "lattice_constant", "overlap"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"sample.{key}", getattr(cfg, key), "a positive value")
    lz = cfg.n_layers * cfg.lattice_constant / (2 * np.sqrt(2))
    if cfg.cell < lz + 2.0:
        raise ConfigError("sample.cell", cfg.cell, f"a z length >= slab + 2 Å = {lz + 2:.2f}")
    return lz


def commensurate(atoms: Atoms, voxel: float) -> NDArray[np.float64]:
    """Strain ``atoms`` (in place) along x and y to whole numbers of ``voxel`` Å; returns the
    strain ``[2]``. Refuses strains above :data:`MAX_STRAIN`."""
    length = atoms.cell.lengths()[:2]
    strain = np.maximum(np.rint(length / voxel), 1) * voxel / length - 1.0
    if np.abs(strain).max() > MAX_STRAIN:
        raise ConfigError(
            "sample.commensurate_voxel",
            voxel,
            f"a voxel that tiles the cell {np.round(length, 4).tolist()} Å to within "
            f"{100 * MAX_STRAIN} % strain (got {np.round(100 * strain, 3).tolist()} %)",
        )
    scale = np.array([1 + strain[0], 1 + strain[1], 1.0])
    atoms.set_cell(atoms.cell.array * scale[:, None], scale_atoms=True)
    return strain


def relax(atoms: Atoms, fmax: float = 0.01, steps: int = 2000) -> Atoms:
    """Relax positions at fixed cell with Stillinger-Weber and FIRE (``fmax`` in eV/Å)."""
    atoms.calc = StillingerWeber()
    FIRE(atoms, logfile=None).run(fmax=fmax, steps=steps)
    return atoms


def run_md(atoms: Atoms, cfg: SiSigma9Config) -> NDArray[np.float64]:
    """Langevin MD of ``atoms`` (calculator attached); returns unwrapped snapshot positions
    ``[S, N, 3]`` (Å) with the centre of mass fixed."""
    rng = np.random.default_rng([cfg.seed, 3])
    MaxwellBoltzmannDistribution(atoms, temperature_K=cfg.temperature, rng=rng)
    atoms.set_momenta(atoms.get_momenta() - atoms.get_momenta().mean(axis=0))
    atoms.set_constraint(FixCom())
    dyn = Langevin(
        atoms,
        cfg.timestep * units.fs,
        temperature_K=cfg.temperature,
        friction=cfg.friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(cfg.n_equilibration)
    snaps = []
    for _ in range(cfg.n_snapshots):
        dyn.run(cfg.snapshot_interval)
        snaps.append(atoms.get_positions())
    return np.asarray(snaps, dtype=np.float64).reshape(cfg.n_snapshots, len(atoms), 3)


_CACHE: dict[str, Atoms] = {}


@register_model("si_sigma9", SiSigma9Config)
def build_si_sigma9(cfg: SiSigma9Config) -> Atoms:
    """Relaxed Σ9 bicrystal slab with its MD ensemble (see the module docstring). Results are
    memoised per config within the process (the simulator builds a model more than once)."""
    key = repr(dataclasses.astuple(cfg))
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build(cfg)
    return _CACHE[key].copy()


def _build(cfg: SiSigma9Config) -> Atoms:
    """Uncached body of :func:`build_si_sigma9`."""
    lz = _check(cfg)
    v = cfg.commensurate_voxel
    atoms = bicrystal(
        cfg.lattice_constant, cfg.grain_periods, cfg.ny, cfg.n_layers, cfg.offset, cfg.overlap
    )
    strain = commensurate(atoms, v) if v > 0 else np.zeros(2)
    atoms = relax(atoms)
    lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
    lz_cell = float(np.ceil(cfg.cell / v - 1e-6) * v) if v > 0 else cfg.cell
    if cfg.n_snapshots:
        snaps = run_md(atoms, cfg)
        mean = snaps.mean(axis=0)
    else:
        mean = atoms.get_positions()
        snaps = mean[None]
    shift = np.array([lx / 4, 0.0, (lz_cell - lz) / 2])  # boundaries at Lx/4 and 3Lx/4
    mean_in = mean + shift
    mean_in[:, :2] = np.mod(mean_in[:, :2], [lx, ly])
    snaps = snaps - mean[None] + mean_in[None]
    snaps[..., :2] = np.mod(snaps[..., :2], [lx, ly])
    static = cfg.static_snapshot >= 0
    out = Atoms(
        "Si" * len(atoms),
        positions=snaps[cfg.static_snapshot] if static else mean_in,
        cell=[lx, ly, lz_cell],
        pbc=True,
    )
    out.set_array("region", atoms.arrays["region"].astype(np.int64))
    if cfg.n_snapshots:
        out.info["truth_snapshots" if static else "snapshots"] = snaps
    out.info["truth_boundary_x"] = np.array([lx / 4, 3 * lx / 4])
    out.info["truth_strain"] = strain
    out.info["truth_md"] = np.array(
        [
            cfg.temperature,
            cfg.timestep,
            cfg.n_equilibration,
            cfg.snapshot_interval,
            cfg.static_snapshot,
        ],
        float,
    )
    return out
