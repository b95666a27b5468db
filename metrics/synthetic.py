"""Small synthetic phantoms for testing and benchmarking the metrics (no physics simulation).

Atoms and columns are rendered as point-sampled Gaussians, so a metric's exact answer is known.
"""

from __future__ import annotations

import numpy as np

from metrics.grid import ArrayLike, angstrom_to_index, check_points, check_positive

SRTIO3_LATTICE_A = 3.905


def render_gaussians(
    positions: ArrayLike,
    heights: ArrayLike,
    sigma: float,
    shape: tuple[int, ...],
    spacing: float,
    origin: ArrayLike | None = None,
    cutoff: float = 4.0,
    chunk: int = 20000,
) -> np.ndarray:
    """Sum of Gaussians ``h * exp(-|r - p|^2 / (2 sigma^2))`` sampled on a grid.

    Args:
        positions: ``[N, 3]`` (x, y, z) Å for a volume ``[z, x, y]`` or ``[N, 2]`` (x, y) Å for an
            image ``[x, y]``.
        heights: ``[N]`` peak heights (or a scalar).
        sigma: Gaussian standard deviation in Å.
        shape: output shape, ``(nz, nx, ny)`` or ``(nx, ny)``.
        spacing: voxel / pixel size in Å.
        origin: Å position of element ``[0, ...]`` ((x, y, z) or (x, y)); default zeros.
        cutoff: each Gaussian is truncated at ``cutoff * sigma``.
        chunk: atoms rendered per batch (bounds the memory).

    Returns:
        float64 array of ``shape``.
    """
    pos = check_points("positions", positions)
    sigma = check_positive("sigma", sigma)
    v = check_positive("spacing", spacing)
    dim = len(shape)
    if pos.shape[1] != dim:
        raise ValueError(f"positions have {pos.shape[1]} columns but shape {shape} has {dim} axes")
    h = np.broadcast_to(np.asarray(heights, dtype=np.float64), (len(pos),))
    idx = angstrom_to_index(pos, v, origin).reshape(-1, dim)
    half = int(np.ceil(cutoff * sigma / v))
    grid = np.stack(np.meshgrid(*[np.arange(-half, half + 1)] * dim, indexing="ij"), -1)
    offsets = grid.reshape(-1, dim)
    out = np.zeros(int(np.prod(shape)))
    for start in range(0, len(pos), chunk):
        p = idx[start : start + chunk]
        cells = np.rint(p).astype(np.intp)[:, None, :] + offsets[None]
        r2 = np.sum(((cells - p[:, None, :]) * v) ** 2, axis=-1)
        val = h[start : start + chunk, None] * np.exp(-0.5 * r2 / sigma**2)
        ok = np.all((cells >= 0) & (cells < np.asarray(shape)), axis=-1) & (
            r2 <= (cutoff * sigma) ** 2
        )
        flat = np.ravel_multi_index(tuple(cells[ok].T), shape)
        out += np.bincount(flat, weights=val[ok], minlength=out.size)
    return out.reshape(shape)


def random_atoms(
    n: int,
    box: ArrayLike,
    min_distance: float,
    rng: np.random.Generator,
    margin: float = 0.0,
) -> np.ndarray:
    """Up to ``n`` random positions ``[M, d]`` in Å inside ``[margin, box - margin]``, all at
    least ``min_distance`` Å apart (dart throwing; M < n if the box is too full)."""
    lo = margin
    hi = np.asarray(box, dtype=np.float64) - margin
    out: list[np.ndarray] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        p = rng.uniform(lo, hi)
        if not out or np.min(np.linalg.norm(np.asarray(out) - p, axis=1)) >= min_distance:
            out.append(p)
    return np.asarray(out).reshape(-1, len(hi))


def srtio3_columns(
    n_cells: tuple[int, int],
    lattice_constant: float = SRTIO3_LATTICE_A,
    origin: ArrayLike = (0.0, 0.0),
) -> dict[str, np.ndarray]:
    """Projected column sites ``[N, 2]`` (x, y) in Å of cubic SrTiO3 viewed along [001].

    Sr at the cell corners, TiO (Ti and O overlapping) at the cell centres, O at the edge
    centres. ``n_cells = (nx, ny)`` unit cells; corner sites run from 0 to n inclusive.
    """
    a = check_positive("lattice_constant", lattice_constant)
    nx, ny = n_cells
    o = np.asarray(origin, dtype=np.float64)
    ix, iy = np.meshgrid(np.arange(nx + 1), np.arange(ny + 1), indexing="ij")
    corners = np.stack([ix.ravel(), iy.ravel()], 1).astype(np.float64)
    cx, cy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel()], 1) + 0.5
    ex = np.stack(np.meshgrid(np.arange(nx) + 0.5, np.arange(ny + 1), indexing="ij"), -1)
    ey = np.stack(np.meshgrid(np.arange(nx + 1), np.arange(ny) + 0.5, indexing="ij"), -1)
    edges = np.concatenate([ex.reshape(-1, 2), ey.reshape(-1, 2)])
    return {"Sr": corners * a + o, "TiO": centres * a + o, "O": edges * a + o}
