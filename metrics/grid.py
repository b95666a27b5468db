"""Grid conventions and input checks shared by the metrics.

Volumes are ``[z, x, y]`` arrays; images are ``[x, y]`` arrays. A volume comes with a scalar
``voxel_size`` (Å) and an ``origin``: the (x, y, z) position in Å of voxel ``[0, 0, 0]``.
Voxel ``[k, i, j]`` lies at ``(origin_x + i*v, origin_y + j*v, origin_z + k*v)``.
An image pixel ``[i, j]`` lies at ``(origin_x + i*p, origin_y + j*p)``.

Every metric converts between indices and Å only through the helpers in this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float, or raise ValueError unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as float, or raise ValueError unless it is finite and >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_array(name: str, value: object, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Return ``value`` as a finite float64 array with ``ndim`` dimensions, else ValueError."""
    arr = np.asarray(value, dtype=np.float64)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
            f"got shape {arr.shape}"
        )
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_grid(name: str, value: object, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Return an image / volume as a finite float32 or float64 array without a needless copy.

    Raises ValueError unless it has ``ndim`` dimensions, is real and all values are finite.
    """
    arr = np.asarray(value)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
            f"got shape {arr.shape}"
        )
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_points(name: str, value: object, dim: int | None = None) -> np.ndarray:
    """Return ``value`` as a finite ``[N, dim]`` float64 array, else raise ValueError.

    ``dim=None`` accepts 2 or 3 columns. An empty input gives shape ``[0, dim]``.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, dim or 3))
    allowed = (2, 3) if dim is None else (dim,)
    if arr.ndim != 2 or arr.shape[1] not in allowed:
        raise ValueError(
            f"{name} must have shape [N, {' or '.join(map(str, allowed))}] (positions in Å), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite positions (found NaN or inf)")
    return arr


def check_origin(origin: ArrayLike, dim: int) -> np.ndarray:
    """Return ``origin`` as a finite float64 vector of length ``dim`` (Å), else raise ValueError."""
    arr = np.asarray(origin, dtype=np.float64).reshape(-1)
    if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"origin must be {dim} finite numbers (Å, order x, y{', z' if dim == 3 else ''}), "
            f"got {origin!r}"
        )
    return arr


def voxel_to_angstrom(
    indices: ArrayLike, voxel_size: float, origin: ArrayLike = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """Convert voxel indices ``[N, 3]`` in array order (k, i, j) = (z, x, y) to positions in Å.

    Returns ``[N, 3]`` positions (x, y, z) in Å: ``(ox + i*v, oy + j*v, oz + k*v)``.
    Fractional indices (sub-voxel positions) are allowed.
    """
    v = check_positive("voxel_size", voxel_size)
    o = check_origin(origin, 3)
    idx = np.asarray(indices, dtype=np.float64).reshape(-1, 3)
    return idx[:, [1, 2, 0]] * v + o


def angstrom_to_voxel(
    positions: ArrayLike, voxel_size: float, origin: ArrayLike = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """Convert positions ``[N, 3]`` (x, y, z) in Å to fractional voxel indices ``[N, 3]`` (k, i, j).

    Inverse of :func:`voxel_to_angstrom`.
    """
    v = check_positive("voxel_size", voxel_size)
    o = check_origin(origin, 3)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    return ((pos - o) / v)[:, [2, 0, 1]]


def pixel_to_angstrom(
    indices: ArrayLike, pixel_size: float, origin: ArrayLike = (0.0, 0.0)
) -> np.ndarray:
    """Convert pixel indices ``[N, 2]`` (i, j) of an ``[x, y]`` image to positions (x, y) in Å."""
    p = check_positive("pixel_size", pixel_size)
    o = check_origin(origin, 2)
    return np.asarray(indices, dtype=np.float64).reshape(-1, 2) * p + o


def angstrom_to_pixel(
    positions: ArrayLike, pixel_size: float, origin: ArrayLike = (0.0, 0.0)
) -> np.ndarray:
    """Convert positions ``[N, 2]`` (x, y) in Å to fractional pixel indices ``[N, 2]`` (i, j)."""
    p = check_positive("pixel_size", pixel_size)
    o = check_origin(origin, 2)
    return (np.asarray(positions, dtype=np.float64).reshape(-1, 2) - o) / p


def index_to_angstrom(
    indices: ArrayLike, spacing: float, origin: ArrayLike | None = None
) -> np.ndarray:
    """Dispatch to :func:`pixel_to_angstrom` (2 columns) or :func:`voxel_to_angstrom` (3)."""
    idx = np.asarray(indices, dtype=np.float64)
    dim = idx.shape[-1] if idx.ndim == 2 else 3
    if dim == 2:
        return pixel_to_angstrom(idx, spacing, (0.0, 0.0) if origin is None else origin)
    return voxel_to_angstrom(idx, spacing, (0.0, 0.0, 0.0) if origin is None else origin)


def angstrom_to_index(
    positions: ArrayLike, spacing: float, origin: ArrayLike | None = None
) -> np.ndarray:
    """Dispatch to :func:`angstrom_to_pixel` (2 columns) or :func:`angstrom_to_voxel` (3)."""
    pos = np.asarray(positions, dtype=np.float64)
    dim = pos.shape[-1] if pos.ndim == 2 else 3
    if dim == 2:
        return angstrom_to_pixel(pos, spacing, (0.0, 0.0) if origin is None else origin)
    return angstrom_to_voxel(pos, spacing, (0.0, 0.0, 0.0) if origin is None else origin)
