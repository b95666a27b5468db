"""Building blocks shared by the model builders: lattices, shapes, displacements, cells."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from numpy.typing import NDArray
from scipy import ndimage

from simulate.errors import ConfigError

FCC_BASIS = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def lattice_points(basis: NDArray[np.float64], a: float, radius: float) -> NDArray[np.float64]:
    """Cubic lattice points (Å) of a basis in units of ``a``, within ``radius`` of the origin.

    An atom sits at the origin. Returns ``[M, 3]`` positions in Å and the basis index as a second
    output via :func:`lattice_points_with_basis`.
    """
    return lattice_points_with_basis(basis, a, radius)[0]


def lattice_points_with_basis(
    basis: NDArray[np.float64], a: float, radius: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Like :func:`lattice_points`, also returning the basis index ``[M]`` of each point."""
    n = int(np.ceil(radius / a)) + 1
    r = np.arange(-n, n + 1)
    cells = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 1, 3)
    pts = (cells + basis[None]).reshape(-1, 3) * a
    idx = np.tile(np.arange(len(basis)), len(cells))
    keep = np.linalg.norm(pts, axis=1) <= radius
    return pts[keep], idx[keep]


def random_blob_mask(
    radius: float, roughness: float, rng: np.random.Generator, spacing: float = 0.5
) -> tuple[NDArray[np.bool_], float]:
    """A random-shaped particle: a sphere whose surface is perturbed by a smooth random field.

    Returns a boolean mask on a cubic grid centred at the origin and the grid spacing (Å).
    ``roughness`` is the relative amplitude of the surface perturbation (0 = sphere).
    """
    n = int(np.ceil(2.4 * radius / spacing)) | 1
    ax = (np.arange(n) - n // 2) * spacing
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), sigma=0.35 * radius / spacing)
    field /= max(np.abs(field).max(), 1e-12)
    return r <= radius * (1.0 + roughness * field), spacing


def inside_mask(pts: NDArray[np.float64], mask: NDArray[np.bool_], spacing: float) -> NDArray:
    """Whether positions (Å, origin at the mask centre) fall inside a centred boolean mask."""
    n = mask.shape[0]
    idx = np.rint(pts / spacing).astype(int) + n // 2
    ok = np.all((idx >= 0) & (idx < n), axis=1)
    out = np.zeros(len(pts), dtype=bool)
    out[ok] = mask[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    return out


def depth_below_surface(
    pts: NDArray[np.float64], mask: NDArray[np.bool_], spacing: float
) -> NDArray[np.float64]:
    """Distance in Å from each position to the outside of the mask (Euclidean distance map)."""
    dist = ndimage.distance_transform_edt(mask) * spacing
    n = mask.shape[0]
    idx = np.clip(np.rint(pts / spacing).astype(int) + n // 2, 0, n - 1)
    return dist[idx[:, 0], idx[:, 1], idx[:, 2]]


def displace(
    pts: NDArray[np.float64], rmsd: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Random displacements whose 3D root-mean-square length is exactly ``rmsd`` Å."""
    if rmsd <= 0 or len(pts) == 0:
        return pts.copy()
    d = rng.standard_normal(pts.shape)
    d *= rmsd / np.sqrt(np.mean(np.sum(d**2, axis=1)))
    return pts + d


def centred_in_cube(
    symbols: list[str] | NDArray, positions: NDArray[np.float64], cell: float, key: str
) -> Atoms:
    """Atoms at ``positions`` (Å, about the origin) placed at the centre of a cubic cell.

    The particle must fit inside the sphere inscribed in the cell with 2 Å to spare, so that
    any tilt keeps it inside the cell; otherwise a :class:`ConfigError` names ``key``.
    """
    radius = float(np.linalg.norm(positions, axis=1).max()) if len(positions) else 0.0
    if radius + 2.0 > cell / 2:
        raise ConfigError(
            key, round(2 * radius, 3), f"a particle diameter below cell - 4 Å = {cell - 4.0} Å"
        )
    return Atoms(symbols=symbols, positions=positions + cell / 2, cell=[cell] * 3, pbc=True)
