"""Gaussian-atom renderer for local-orbital tomography (paper 004 eqs. 1-3).

Atom ``i`` with specimen-frame position ``x_i [3]`` [Å] (zero tilt), height ``H_i`` and width
``B_i`` [Å**2] appears at tilt ``j`` at ``u_ij = R_j (x_i - c) + c + (tau_x, tau_y, 0)``
(same rotation and centre as :mod:`reconstruct.tomography`) and contributes
``H_i exp(-((u - u_ij)**2 + (v - v_ij)**2) / B_i)`` to the projected slice that contains its
depth ``w_ij``. (Paper 004 eq. 2 prints the exponent without its minus sign.) Slices are
``n_slices`` equal intervals of ``slice_thickness`` centred on ``c_z``. The slice assignment is
piecewise constant, so there is no gradient along the beam within a slice. Rendering splats
each atom onto a small window around it (cost linear in atoms x tilts; see
:func:`render_gaussian_slices`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from metrics.classify import classify_species

from .data import TomoData
from .tomography import euler_matrix


def transform_atoms(
    positions: Tensor, rotation: Tensor, shifts: Tensor | None, centre: Tensor
) -> Tensor:
    """Positions at each tilt: ``[N, 3]`` -> ``[T, N, 3]`` for ``rotation [T, 3, 3]``."""
    rotated = torch.einsum("tij,nj->tni", rotation, positions - centre) + centre
    if shifts is not None:
        tau = torch.cat([shifts, torch.zeros_like(shifts[:, :1])], dim=-1)
        rotated = rotated + tau[:, None, :]
    return rotated


CUTOFF = 3.5  # window half-width in units of sqrt(B): the Gaussian is exp(-12.25) there


def _axis_window(centre: Tensor, width: Tensor, n: int, step: float, half: int
                 ) -> tuple[Tensor, Tensor]:
    """Pixel indices ``[T, N, W]`` (periodic) of a window of ``2 half + 1`` pixels around
    ``centre [T, N]`` [Å] and the 1D Gaussian ``exp(-(x - c)**2 / B)`` on them."""
    offsets = torch.arange(-half, half + 1, device=centre.device)
    nearest = torch.round(centre.detach() / step).long()
    index = nearest[..., None] + offsets  # [T, N, W], unwrapped
    coordinate = index.to(centre.dtype) * step
    gauss = torch.exp(-((coordinate - centre[..., None]) ** 2) / width[:, None])
    return index % n, gauss


def render_gaussian_slices(
    positions: Tensor,
    heights: Tensor,
    widths: Tensor,
    shape: tuple[int, int],
    sampling: tuple[float, float],
    n_slices: int,
    slice_thickness: float,
    centre_z: float,
    cutoff: float = CUTOFF,
) -> Tensor:
    """Projected slices ``[T, S, X, Y]`` of Gaussian atoms at lab positions ``[T, N, 3]``.

    ``heights [N]`` (units of the output, e.g. V Å or HAADF counts), ``widths [N]`` [Å**2];
    pixel ``(i, j)`` is at ``(i dx, j dy)``, periodic in x and y (like the FFT convolution
    that follows). Atoms outside the slab contribute nothing. Each atom is splatted onto its
    own window of ``cutoff sqrt(max B)`` Å around it (separable Gaussians, one ``index_add``),
    so time and memory are ``O(T N W**2)``: linear in atoms x tilts, never atoms x pixels.
    """
    t, n = positions.shape[:2]
    nx, ny = shape
    reach = cutoff * float(widths.detach().max().sqrt()) if n else 0.0
    hx = min(int(math.ceil(reach / sampling[0])), (nx - 1) // 2)
    hy = min(int(math.ceil(reach / sampling[1])), (ny - 1) // 2)
    ix, gx = _axis_window(positions[..., 0], widths, nx, sampling[0], hx)  # [T, N, Wx]
    iy, gy = _axis_window(positions[..., 1], widths, ny, sampling[1], hy)  # [T, N, Wy]
    top = centre_z - n_slices * slice_thickness / 2
    k = torch.floor((positions[..., 2].detach() - top) / slice_thickness).long()  # [T, N]
    inside = ((k >= 0) & (k < n_slices)).to(positions.dtype)
    base = (torch.arange(t, device=k.device)[:, None] * n_slices + k.clamp(0, n_slices - 1))
    flat = (base[..., None, None] * nx + ix[..., :, None]) * ny + iy[..., None, :]
    weight = (heights * inside)[..., None, None] * gx[..., :, None] * gy[..., None, :]
    out = positions.new_zeros(t * n_slices * nx * ny)
    out = out.index_add(0, flat.reshape(-1), weight.reshape(-1))
    return out.reshape(t, n_slices, nx, ny)


class GaussianAtoms(nn.Module):
    """Learnable atoms (group ``"atoms"``): ``positions [N, 3]`` [Å], ``heights [N]``,
    ``widths [N]`` [Å**2] (stored as ``log``-widths so that they stay positive).

    ``by_integral=True`` stores ``log_integrals`` (the projected integral ``H pi B``, > 0)
    instead of ``heights``, which become ``exp(log_integrals) / (pi B)``: a change of width
    then keeps an atom's intensity, and steps are relative, which conditions a joint fit of
    heights and widths far better (LOT's refinement)."""

    def __init__(self, positions: Tensor, heights: Tensor, widths: Tensor,
                 by_integral: bool = False) -> None:
        super().__init__()
        self.positions = nn.Parameter(positions.clone())
        self.log_widths = nn.Parameter(torch.log(widths.clone()))
        self.by_integral = by_integral
        if by_integral:
            integral = heights.clone() * math.pi * widths
            self.log_integrals = nn.Parameter(torch.log(integral.clamp_min(1e-30)))
        else:
            self.heights = nn.Parameter(heights.clone())

    def __getattr__(self, name: str):  # ``heights`` of the integral parametrisation
        if name == "heights" and "log_integrals" in self._parameters:
            return torch.exp(self.log_integrals) / (math.pi * torch.exp(self.log_widths))
        return super().__getattr__(name)

    @property
    def widths(self) -> Tensor:
        return torch.exp(self.log_widths)

    def forward(
        self,
        angles: Tensor,
        shifts: Tensor | None,
        centre: Tensor,
        shape: tuple[int, int],
        sampling: tuple[float, float],
        n_slices: int,
        slice_thickness: float,
    ) -> Tensor:
        """Slices ``[T, S, X, Y]`` for Euler ``angles [T, 3]`` (phi, theta, psi) [rad]."""
        rotation = euler_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
        lab = transform_atoms(self.positions, rotation, shifts, centre)
        return render_gaussian_slices(
            lab,
            self.heights,
            self.widths,
            shape,
            sampling,
            n_slices,
            slice_thickness,
            float(centre[2]),
        )


def grid_points(extent: tuple[float, float, float], spacing: float, margin: float = 0.0,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                ) -> Tensor:
    """A regular grid ``[N, 3]`` (x, y, z) [Å] of ``spacing`` inside ``[margin, extent -
    margin]`` on each axis, centred in the box (paper 004's start at ``d_est``)."""
    axes = []
    for length in extent:
        n = max(int((length - 2 * margin) // spacing) + 1, 1)
        start = (length - (n - 1) * spacing) / 2
        axes.append(start + spacing * torch.arange(n, device=device, dtype=dtype))
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def merge_orbitals(positions: Tensor, heights: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Merge orbitals closer than ``radius`` [Å] (greedy, strongest first).

    The strongest orbital not yet taken absorbs every untaken orbital within ``radius`` of it;
    the merged orbital sits at their height-weighted centroid with the summed height (which
    keeps the integral ``H pi B`` at a common width). Returns ``positions [M, 3]``,
    ``heights [M]``, strongest first. ``heights`` must be ``>= 0``. Bookkeeping, not physics:
    no gradient; ``O(N k)`` with a k-d tree (``k`` neighbours within ``radius``).
    """
    from scipy.spatial import cKDTree

    pos = positions.detach().cpu().double().numpy()
    h = heights.detach().cpu().double().numpy()
    order = np.argsort(-h, kind="stable")
    neighbours = cKDTree(pos).query_ball_point(pos, radius)
    taken = np.zeros(len(h), dtype=bool)
    out_pos, out_h = [], []
    for i in order:
        if taken[i]:
            continue
        near = np.asarray(neighbours[i])
        near = near[~taken[near]]
        taken[near] = True
        w = h[near]
        total = w.sum()
        out_pos.append(pos[near].T @ w / total if total > 0 else pos[i])
        out_h.append(total)
    like = dict(dtype=positions.dtype, device=positions.device)
    return (torch.as_tensor(np.reshape(out_pos, (-1, 3)), **like),
            torch.as_tensor(np.asarray(out_h), **like))


def cell_centre_A(data: TomoData) -> Tensor:
    """The tilt pivot ``[3]`` (x, y, z) [Å]: the cell centre, ``n v / 2`` on every axis."""
    nz, nx, ny = data.volume_shape
    v = data.voxel_size
    return torch.tensor([nx * v / 2, ny * v / 2, nz * v / 2], device=data.device)


def visual_hull(points: Tensor, data: TomoData, target: Tensor, threshold: float,
                reach: float) -> Tensor:
    """Mask ``[N]`` of specimen-frame ``points [N, 3]`` [Å] whose projection lands, at every
    tilt, within ``reach`` Å of normalised signal ``target [T, P] >= threshold`` (the images
    of a raster are dilated by ``reach``, so that the gaps between columns stay inside; the
    nearest scan position is looked up)."""
    t = data.n_tilts
    image = target
    if data.haadf.dim() == 3:  # a raster [T, sx, sy]: dilate by a max filter
        step = float((data.haadf_positions[0, 1] - data.haadf_positions[0, 0]).abs().max())
        half = max(int(reach / step), 0) if step > 0 else 0
        raster = target.reshape(t, 1, *data.haadf.shape[1:])
        image = nn.functional.max_pool2d(raster, 2 * half + 1, 1, half).reshape(t, -1)
    keep = torch.ones(len(points), dtype=torch.bool, device=points.device)
    rotation = euler_matrix(data.euler[:, 0], data.euler[:, 1], data.euler[:, 2])
    lab = transform_atoms(points, rotation, data.shifts, cell_centre_A(data))  # [T, N, 3]
    raster = tuple(data.haadf.shape[1:]) if data.haadf.dim() == 3 else None
    for j in range(t):
        nearest = nearest_scan_index(lab[j, :, :2], data.haadf_positions[j], raster)
        keep &= image[j, nearest] >= threshold
    return keep


def nearest_scan_index(points: Tensor, scan: Tensor, raster: tuple[int, int] | None) -> Tensor:
    """Index ``[N]`` of the scan position of ``scan [P, 2]`` nearest to each of ``points
    [N, 2]``: by rounding on a ``raster (sx, sy)``, else by distance in chunks."""
    if raster is None:
        return torch.cat([torch.cdist(p, scan).argmin(-1) for p in points.split(4096)])
    sx, sy = raster
    grid = scan.reshape(sx, sy, 2)
    step = torch.stack([grid[min(1, sx - 1), 0, 0] - grid[0, 0, 0],
                        grid[0, min(1, sy - 1), 1] - grid[0, 0, 1]]).clamp_min(1e-6)
    index = torch.round((points - grid[0, 0]) / step).long()
    i, k = index[:, 0].clamp(0, sx - 1), index[:, 1].clamp(0, sy - 1)
    return i * sy + k


def assign_species(intensities: np.ndarray, species: list[int]) -> np.ndarray:
    """Atomic numbers ``[N]`` (0 = not an atom) from integrated intensities ``H pi B``: the
    suite's classifier on the intensities clipped at their 99th percentile (a few bright
    outliers must not form a species and turn every atom into a non-atom), with a non-atom
    class where one is separated, kept only if it is at most half as bright as the weakest
    species."""
    clipped = np.minimum(intensities, np.quantile(intensities, 0.99))  # no class of outliers
    classes = classify_species(clipped, len(species), atomic_numbers=species)
    means = classes.class_means
    if classes.has_non_atom and means[0] > 0.5 * means[1]:
        classes = classify_species(clipped, len(species), atomic_numbers=species,
                                   non_atom=False)
    return np.asarray(classes.labels)
