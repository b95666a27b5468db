"""Paper 002's phantoms: mistilted SrTiO3 [001] slabs and two oppositely tilted Cu particles.

Mistilt convention (all three builders): a mistilt θ = (θx, θy) in mrad tilts the crystal's
zone axis so that an atom deeper in the specimen (larger z, downstream) lies further towards +x
(θx > 0) or +y (θy > 0): an atomic column runs along (tan θx, tan θy, 1).

A laterally periodic slab cannot be rotated rigidly without breaking its periodicity (a
rotation about y also moves atoms along z by x sin θ). The slabs are therefore mistilted by the
shear that a small tilt does to the columns, ``x' = x + (z - zc) tan θx`` and
``y' = y + (z - zc) tan θy`` about the slab's middle depth ``zc``; this keeps the lateral cell
and is exactly the geometry of the tilted Fresnel propagator (CONVENTIONS.md). It differs from
a rotation by the O(θ²) change of the plane spacing and by the tilt of the atomic planes
(O(θ) along z over the lateral size), which a laterally periodic specimen cannot have. The Cu
particles are finite and are rotated rigidly about their own centres.

Tilt maps: ``srtio3_gradient`` and ``cu_pair`` store ``truth_tilt_map`` ``[Mx, My, 2]`` (θx, θy in
mrad, NaN where no atomic column lies within ``MAP_RADIUS`` Å laterally, i.e. vacuum) on a
lateral grid of ``Mx × My`` pixels centred at ``(i·sx, j·sy)``, ``truth_tilt_map_step`` =
``[sx, sy]`` Å (about ``MAP_STEP``, dividing the cell); the tilt-series simulator samples it
at the true scan positions into ``truth_tilt_at_positions`` ``[T, P, 2]``.

Cells: the slabs have the lateral cell ``nx·a × ny·a`` (plus ``2·vacuum_x`` along x for the
tilt-gradient slab) and ``cell`` Å along z, ``pbc = True``, with the slab centred in z. The Cu
pair sits in a cubic cell of side ``cell``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from simulate.errors import ConfigError
from simulate.geometry import euler_matrix
from simulate.models.common import FCC_BASIS, lattice_points
from simulate.models.registry import SampleConfig, register_model

# SrTiO3 perovskite basis (fractions of a): Sr, Ti, O, O, O
PEROVSKITE = (
    ("Sr", (0.0, 0.0, 0.0)),
    ("Ti", (0.5, 0.5, 0.5)),
    ("O", (0.5, 0.5, 0.0)),
    ("O", (0.5, 0.0, 0.5)),
    ("O", (0.0, 0.5, 0.5)),
)
PROFILES = ("linear", "smooth")
MAP_STEP = 0.2  # Å, tilt-map pixel (about)
MAP_RADIUS = 1.5  # Å, a map pixel is crystal if a projected atom lies this close
DIRECTIONS = ("x", "y")


@dataclass
class SlabConfig(SampleConfig):
    """A SrTiO3 [001] slab (a = ``lattice_constant`` Å, cubic): ``nx × ny`` unit cells
    laterally and ``round(thickness / a)`` unit cells (SrO- to TiO2-terminated) along the beam;
    ``cell`` is the cell length along z (Å), the slab centred in it with vacuum above/below."""

    cell: float = 109.34
    nx: int = 10
    ny: int = 10
    thickness: float = 97.6
    lattice_constant: float = 3.905


@dataclass
class SrTiO3Config(SlabConfig):
    """Paper 002, Fig. 2: a slab (5 slices × ~2 nm) with a uniform mistilt ``tilt_x, tilt_y``
    (mrad; the paper sweeps 0-12 mrad along x). Truth: ``truth_tilt_mrad`` = [θx, θy] and
    ``truth_thickness_A`` = [unit cells × a] (also for the tilt-gradient slab)."""

    name: str = "srtio3"
    tilt_x: float = 12.0
    tilt_y: float = 0.0


@dataclass
class SrTiO3GradientConfig(SlabConfig):
    """Paper 002, Fig. 7: a slab whose mistilt varies continuously along x, from
    ``(tilt_x_start, tilt_y_start)`` at its first column to ``(tilt_x_end, tilt_y_end)`` at its
    last (mrad), ``profile`` ``linear`` or ``smooth`` (cosine ramp). The crystal is finite along
    x with ``vacuum_x`` Å of vacuum on either side (the paper's model has vacuum at its edges),
    periodic along y. Truth: ``truth_tilt_profile`` = ``[M, 3]`` rows (x Å, θx, θy mrad), x being
    the column position at the slab's middle depth, sampled every a/2 over the crystal."""

    name: str = "srtio3_gradient"
    nx: int = 20
    ny: int = 8
    vacuum_x: float = 7.81
    tilt_x_start: float = 0.0
    tilt_x_end: float = 10.0
    tilt_y_start: float = 0.0
    tilt_y_end: float = 0.0
    profile: str = "linear"


@dataclass
class CuPairConfig(SampleConfig):
    """Paper 002, Fig. 6: two fcc Cu particles (a = 3.615 Å, [001] along the beam before tilt),
    side by side along x with ``gap`` Å between them, each a cylinder of ``width_k`` Å diameter
    and ``thickness_k`` Å along the beam (6 nm and 2 nm in the paper), mistilted by ``tilt_k``
    mrad in ``direction`` (paper: 1.6° = 27.93 mrad and 0.8° = 13.96 mrad in opposite
    directions, its tilt map shows the y component). Region 0 = first particle, 1 = second.
    Truth: ``truth_tilt_regions`` = ``[2, 6]`` rows (θx, θy mrad, x_min, x_max, y_min, y_max Å:
    the lateral box of each particle's atoms)."""

    name: str = "cu_pair"
    cell: float = 88.0
    lattice_constant: float = 3.615
    thickness_1: float = 60.0
    width_1: float = 40.0
    tilt_1: float = 27.93
    thickness_2: float = 20.0
    width_2: float = 30.0
    tilt_2: float = -13.96
    gap: float = 8.0
    direction: str = "y"


def _unit_cells(cfg: SlabConfig) -> int:
    """Checked slab size: the number of unit cells along z."""
    for key in ("nx", "ny"):
        if int(getattr(cfg, key)) < 1:
            raise ConfigError(f"sample.{key}", getattr(cfg, key), "at least 1 unit cell")
    if cfg.lattice_constant <= 0:
        raise ConfigError("sample.lattice_constant", cfg.lattice_constant, "a positive a in Å")
    nz = int(round(cfg.thickness / cfg.lattice_constant))
    if nz < 1:
        raise ConfigError("sample.thickness", cfg.thickness, f">= {cfg.lattice_constant} Å")
    if cfg.cell < nz * cfg.lattice_constant + 2.0:
        raise ConfigError(
            "sample.cell", cfg.cell, f"a z length >= slab + 2 Å = {nz * cfg.lattice_constant + 2}"
        )
    return nz


def slab_thickness(cfg: SlabConfig) -> NDArray[np.float64]:
    """The slab's thickness along the beam, ``[1]`` Å: its unit cells times a (what APP's
    slices times their thickness should recover, paper 002)."""
    return np.array([_unit_cells(cfg) * cfg.lattice_constant], dtype=np.float64)


def perovskite_slab(cfg: SlabConfig) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Untilted SrTiO3 slab: symbols ``[N]`` and positions ``[N, 3]`` (Å), laterally from the
    origin, centred in z at ``cfg.cell / 2``."""
    a, nz = cfg.lattice_constant, _unit_cells(cfg)
    ijk = np.stack(
        np.meshgrid(np.arange(cfg.nx), np.arange(cfg.ny), np.arange(nz), indexing="ij"), -1
    ).reshape(-1, 1, 3)
    frac = np.array([f for _, f in PEROVSKITE])
    pos = ((ijk + frac[None]).reshape(-1, 3)) * a
    symbols = np.tile([s for s, _ in PEROVSKITE], len(ijk))
    pos[:, 2] += cfg.cell / 2 - (2 * nz - 1) * a / 4  # atomic planes at k·a/2, centred
    return symbols, pos


def shear(
    pos: NDArray[np.float64], tilt_x: NDArray | float, tilt_y: NDArray | float, zc: float
) -> NDArray[np.float64]:
    """Mistilt by shear: ``x += (z - zc) tan θx``, ``y += (z - zc) tan θy``; θ in mrad (scalars
    or one value per atom)."""
    out = pos.copy()
    out[:, 0] += (pos[:, 2] - zc) * np.tan(np.asarray(tilt_x) * 1e-3)
    out[:, 1] += (pos[:, 2] - zc) * np.tan(np.asarray(tilt_y) * 1e-3)
    return out


def map_grid(extent: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lateral map grid over ``extent`` = ``[Lx, Ly]`` Å: pixel centres ``[Mx, My, 2]`` (Å) and
    the step ``[sx, sy]`` (Å), the largest not above :data:`MAP_STEP` that divides the cell."""
    counts = np.ceil(np.asarray(extent, dtype=np.float64) / MAP_STEP - 1e-9).astype(int)
    step = np.asarray(extent, dtype=np.float64) / counts
    xs, ys = (np.arange(counts[k]) * step[k] for k in range(2))
    return np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1), step


def footprint(
    xy: NDArray[np.float64], grid: NDArray[np.float64], extent: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Which map pixels ``grid`` ``[Mx, My, 2]`` (Å) have a projected atom ``xy`` ``[N, 2]``
    within :data:`MAP_RADIUS` Å (periodic in ``extent`` = ``[Lx, Ly]``)."""
    box = np.asarray(extent, dtype=np.float64)
    tree = cKDTree(np.mod(xy, box), boxsize=box)
    dist = tree.query(np.mod(grid.reshape(-1, 2), box))[0]
    return (dist <= MAP_RADIUS).reshape(grid.shape[:2])


@register_model("srtio3", SrTiO3Config)
def build_srtio3(cfg: SrTiO3Config) -> Atoms:
    """Uniformly mistilted SrTiO3 [001] slab, laterally periodic (see the module docstring)."""
    symbols, pos = perovskite_slab(cfg)
    a = cfg.lattice_constant
    pos = shear(pos, cfg.tilt_x, cfg.tilt_y, cfg.cell / 2)
    atoms = Atoms(symbols=symbols, positions=pos, cell=[cfg.nx * a, cfg.ny * a, cfg.cell])
    atoms.pbc = True
    atoms.wrap()
    atoms.info["truth_tilt_mrad"] = np.array([cfg.tilt_x, cfg.tilt_y], dtype=np.float64)
    atoms.info["truth_thickness_A"] = slab_thickness(cfg)
    return atoms


def tilt_profile(cfg: SrTiO3GradientConfig, x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mistilt ``[len(x), 2]`` (θx, θy in mrad) at lateral positions ``x`` (Å, cell frame)."""
    if cfg.profile not in PROFILES:
        raise ConfigError("sample.profile", cfg.profile, f"one of {PROFILES}")
    a = cfg.lattice_constant
    x0, x1 = cfg.vacuum_x, cfg.vacuum_x + (cfg.nx - 0.5) * a
    u = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
    if cfg.profile == "smooth":
        u = (1 - np.cos(np.pi * u)) / 2
    start = np.array([cfg.tilt_x_start, cfg.tilt_y_start])
    end = np.array([cfg.tilt_x_end, cfg.tilt_y_end])
    return start + u[:, None] * (end - start)


@register_model("srtio3_gradient", SrTiO3GradientConfig)
def build_srtio3_gradient(cfg: SrTiO3GradientConfig) -> Atoms:
    """SrTiO3 slab whose mistilt varies along x (per column, evaluated at its mid-depth x)."""
    if cfg.nx < 2:
        raise ConfigError("sample.nx", cfg.nx, "at least 2 unit cells for a tilt gradient")
    symbols, pos = perovskite_slab(cfg)
    a = cfg.lattice_constant
    pos[:, 0] += cfg.vacuum_x
    theta = tilt_profile(cfg, pos[:, 0])
    reach = 0.5 * _unit_cells(cfg) * a * np.tan(np.abs(theta[:, 0]).max() * 1e-3)
    if cfg.vacuum_x < reach + 1.0:
        raise ConfigError("sample.vacuum_x", cfg.vacuum_x, f">= {reach + 1.0:.2f} Å (shear)")
    pos = shear(pos, theta[:, 0], theta[:, 1], cfg.cell / 2)
    lx = cfg.nx * a + 2 * cfg.vacuum_x
    atoms = Atoms(symbols=symbols, positions=pos, cell=[lx, cfg.ny * a, cfg.cell], pbc=True)
    atoms.wrap()
    xs = cfg.vacuum_x + np.arange(2 * cfg.nx) * a / 2
    atoms.info["truth_tilt_profile"] = np.column_stack([xs, tilt_profile(cfg, xs)])
    extent = np.array([lx, cfg.ny * a])
    grid, step = map_grid(extent)
    tilt = tilt_profile(cfg, grid[..., 0].ravel()).reshape(*grid.shape[:2], 2)
    tilt[~footprint(atoms.positions[:, :2], grid, extent)] = np.nan
    atoms.info["truth_tilt_map"], atoms.info["truth_tilt_map_step"] = tilt, step
    atoms.info["truth_thickness_A"] = slab_thickness(cfg)
    return atoms


def _tilt_matrix(tilt_mrad: float, direction: str) -> NDArray[np.float64]:
    """Rotation taking the z axis to the tilted column direction (module convention)."""
    deg = float(np.degrees(tilt_mrad * 1e-3))
    return euler_matrix(-deg, 0.0, 0.0) if direction == "y" else euler_matrix(0.0, deg, 0.0)


def _cylinder(a: float, width: float, thickness: float) -> NDArray[np.float64]:
    """fcc points (Å, about the origin) in a z-axis cylinder of diameter ``width`` and height
    ``thickness`` (whole (002) planes, centred)."""
    pts = lattice_points(FCC_BASIS, a, float(np.hypot(width, thickness)) / 2 + a)
    nz = int(np.floor(thickness / (a / 2) + 1e-9))  # number of plane spacings
    zc = (nz % 2) * a / 4  # centre between planes when their count is even
    pts = pts - [0.0, 0.0, zc]
    keep = (np.hypot(pts[:, 0], pts[:, 1]) <= width / 2) & (np.abs(pts[:, 2]) <= nz * a / 4 + 1e-6)
    return pts[keep]


def _check_pair(cfg: CuPairConfig) -> None:
    """Positive sizes, a known tilt direction."""
    if cfg.direction not in DIRECTIONS:
        raise ConfigError("sample.direction", cfg.direction, f"one of {DIRECTIONS}")
    for key in ("lattice_constant", "thickness_1", "width_1", "thickness_2", "width_2"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"sample.{key}", getattr(cfg, key), "a positive length in Å")
    if cfg.gap < 0:
        raise ConfigError("sample.gap", cfg.gap, "a gap >= 0 Å")


@register_model("cu_pair", CuPairConfig)
def build_cu_pair(cfg: CuPairConfig) -> Atoms:
    """Two Cu cylinders side by side along x, each rotated about its own centre by its mistilt;
    the pair is centred in the cubic cell."""
    _check_pair(cfg)
    a, c = cfg.lattice_constant, cfg.cell / 2
    widths, tilts = (cfg.width_1, cfg.width_2), (cfg.tilt_1, cfg.tilt_2)
    x1 = c - (cfg.width_1 + cfg.gap + cfg.width_2) / 2 + cfg.width_1 / 2
    centres = (x1, x1 + (cfg.width_1 + cfg.width_2) / 2 + cfg.gap)
    parts, rows = [], []
    for k, thick in enumerate((cfg.thickness_1, cfg.thickness_2)):
        pts = _cylinder(a, widths[k], thick) @ _tilt_matrix(tilts[k], cfg.direction).T
        pts += [centres[k], c, c]
        parts.append(pts)
        tx, ty = (tilts[k], 0.0) if cfg.direction == "x" else (0.0, tilts[k])
        lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        rows.append([tx, ty, lo[0], hi[0], lo[1], hi[1]])
    pos = np.concatenate(parts)
    if pos.min() < 2.0 or pos.max() > cfg.cell - 2.0:
        span = float(np.ptp(pos, axis=0).max())
        raise ConfigError("sample.cell", cfg.cell, f"a cell >= pair extent + 4 Å = {span + 4:.1f}")
    atoms = Atoms(symbols=["Cu"] * len(pos), positions=pos, cell=[cfg.cell] * 3, pbc=True)
    atoms.set_array("region", np.repeat([0, 1], [len(p) for p in parts]).astype(np.int64))
    atoms.info["truth_tilt_regions"] = np.array(rows, dtype=np.float64)
    extent = np.array([cfg.cell, cfg.cell])
    grid, step = map_grid(extent)
    tilt = np.full((*grid.shape[:2], 2), np.nan)
    for k, part in enumerate(parts):  # footprints overlap only if gap < 3 Å: the second wins
        tilt[footprint(part[:, :2], grid, extent)] = rows[k][:2]
    atoms.info["truth_tilt_map"], atoms.info["truth_tilt_map_step"] = tilt, step
    return atoms
