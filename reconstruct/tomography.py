"""Tomographic geometry: Euler rotations of volumes, slice binning, linear projector.

Volumes are ``[Z, X, Y]`` (z = slice index along the beam, downstream positive), optionally
with leading channels ``[C, Z, X, Y]``. Voxel ``(k, i, j)`` sits at ``(x, y, z) = (i dx, j dy,
k dz)`` [Å]. A tilt ``j`` rotates the specimen by ``R_j = R_z(psi) R_y(theta) R_x(phi)``
(angles in rad; right-handed, active) about the volume centre ``c`` and then translates it by
``tau_j = (tau_x, tau_y)`` [Å] in the image plane: a specimen point ``r0`` moves to
``R (r0 - c) + c + tau``. Resampling is trilinear (``grid_sample``), differentiable in the
volume, the angles and the shifts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

Voxel = tuple[float, float, float]


def euler_matrix(phi: Tensor, theta: Tensor, psi: Tensor) -> Tensor:
    """``R = R_z(psi) R_y(theta) R_x(phi)`` ``[..., 3, 3]`` for angles ``[...]`` [rad].

    ``R_x = [[1,0,0],[0,c,-s],[0,s,c]]``, ``R_y = [[c,0,s],[0,1,0],[-s,0,c]]``,
    ``R_z = [[c,-s,0],[s,c,0],[0,0,1]]``; acts on column vectors ``(x, y, z)``.
    """
    phi, theta, psi = torch.broadcast_tensors(phi, theta, psi)
    one, zero = torch.ones_like(phi), torch.zeros_like(phi)

    def matrix(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    cx, sx = torch.cos(phi), torch.sin(phi)
    cy, sy = torch.cos(theta), torch.sin(theta)
    cz, sz = torch.cos(psi), torch.sin(psi)
    rx = matrix([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    ry = matrix([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rz = matrix([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return rz @ ry @ rx


def _axis(n: int, step: float, like: Tensor, centre: float | None = None) -> Tensor:
    """Physical coordinates [Å] of ``n`` voxel centres relative to the rotation centre
    ``centre`` (index units; default the volume centre ``(n - 1) / 2``)."""
    c = (n - 1) / 2 if centre is None else centre
    return (torch.arange(n, device=like.device, dtype=like.dtype) - c) * step


def _normalise(coordinate: Tensor, n: int, step: float, centre: float | None = None) -> Tensor:
    """Coordinate [Å] relative to ``centre`` -> ``grid_sample`` coordinate (align_corners)."""
    if n == 1:
        return coordinate * 0.0
    c = (n - 1) / 2 if centre is None else centre
    return (coordinate / step + c) / ((n - 1) / 2) - 1


def rotation_grid(
    shape: tuple[int, int, int],
    rotation: Tensor,
    shifts: Tensor | None,
    voxel: Voxel,
    centre: tuple[float, float, float] | None = None,
) -> Tensor:
    """Sampling grid ``[T, Z, X, Y, 3]`` (last axis ordered ``(y, x, z)`` for ``grid_sample``).

    Output voxel at ``r`` samples the input at ``R^T (r - c - tau) + c``.
    ``rotation [T, 3, 3]``, ``shifts [T, 2]`` [Å] or None, ``voxel = (dz, dx, dy)`` [Å],
    ``centre = (cz, cx, cy)`` the rotation centre in index units (default the volume centre).
    """
    nz, nx, ny = shape
    dz, dx, dy = voxel
    cz, cx, cy = (None, None, None) if centre is None else centre
    z = _axis(nz, dz, rotation, cz)[:, None, None]
    x = _axis(nx, dx, rotation, cx)[None, :, None]
    y = _axis(ny, dy, rotation, cy)[None, None, :]
    xs, ys, zs = torch.broadcast_tensors(x, y, z)
    r = torch.stack([xs, ys, zs], dim=-1)[None]  # [1, Z, X, Y, 3] as (x, y, z)
    if shifts is not None:
        tau = torch.cat([shifts, torch.zeros_like(shifts[:, :1])], dim=-1)
        r = r - tau[:, None, None, None, :]
    src = torch.einsum("tji,tzxyj->tzxyi", rotation, r.expand(rotation.shape[0], -1, -1, -1, -1))
    return torch.stack(
        [
            _normalise(src[..., 1], ny, dy, cy),
            _normalise(src[..., 0], nx, dx, cx),
            _normalise(src[..., 2], nz, dz, cz),
        ],
        dim=-1,
    )


def rotate_volume(
    volume: Tensor,
    rotation: Tensor,
    shifts: Tensor | None = None,
    voxel: Voxel = (1, 1, 1),
    centre: tuple[float, float, float] | None = None,
) -> Tensor:
    """Rotate (and shift) ``volume [Z, X, Y]`` or ``[C, Z, X, Y]`` for each of ``T`` tilts.

    Returns ``[T, Z, X, Y]`` or ``[T, C, Z, X, Y]``; zero outside the input volume.
    Linear in ``volume``; its exact adjoint is :func:`rotate_volume_adjoint`.
    """
    squeeze = volume.dim() == 3
    vol = volume[None] if squeeze else volume
    grid = rotation_grid(tuple(vol.shape[-3:]), rotation, shifts, voxel, centre).to(vol.dtype)
    batch = vol[None].expand(rotation.shape[0], *vol.shape)
    out = functional.grid_sample(
        batch, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out[:, 0] if squeeze else out


def rotate_volume_adjoint(
    rotated: Tensor,
    rotation: Tensor,
    shifts: Tensor | None = None,
    voxel: Voxel = (1, 1, 1),
    centre: tuple[float, float, float] | None = None,
) -> Tensor:
    """Exact adjoint of :func:`rotate_volume` in the volume (trilinear splatting, via autograd)."""
    shape = rotated.shape[1:]
    with torch.enable_grad():
        x = torch.zeros(shape, dtype=rotated.dtype, device=rotated.device, requires_grad=True)
        y = rotate_volume(
            x, rotation.detach(), None if shifts is None else shifts.detach(), voxel, centre
        )
        (grad,) = torch.autograd.grad(y, x, grad_outputs=rotated)
    return grad


def bin_slices(volume: Tensor, n_slices: int, dz: float) -> Tensor:
    """Bin ``[..., Z, X, Y]`` voxels [V] into ``[..., S, X, Y]`` projected slices [V Å].

    Slice ``s`` is ``dz * sum`` of voxels ``s b .. (s+1) b - 1`` with ``b = Z / S``.
    """
    nz = volume.shape[-3]
    if nz % n_slices:
        raise ValueError(f"{nz} voxels along z do not bin into {n_slices} slices")
    b = nz // n_slices
    return volume.reshape(*volume.shape[:-3], n_slices, b, *volume.shape[-2:]).sum(-3) * dz


def bin_slices_adjoint(slices: Tensor, n_voxels: int, dz: float) -> Tensor:
    """Adjoint of :func:`bin_slices`: repeat each slice ``Z / S`` times, times ``dz``."""
    b = n_voxels // slices.shape[-3]
    return torch.repeat_interleave(slices, b, dim=-3) * dz


def project(volume: Tensor, dz: float) -> Tensor:
    """Linear projection along the beam: ``dz * sum_z`` of ``[..., Z, X, Y]`` -> ``[..., X, Y]``."""
    return volume.sum(dim=-3) * dz


def project_adjoint(image: Tensor, n_voxels: int, dz: float) -> Tensor:
    """Adjoint of :func:`project` (back-projection along z): ``[..., X, Y] -> [..., Z, X, Y]``."""
    return image.unsqueeze(-3).expand(*image.shape[:-2], n_voxels, *image.shape[-2:]) * dz


class TiltSeriesGeometry(nn.Module):
    """Learnable rigid alignment of a tilt series.

    Parameters: ``angles [T, 3]`` = (phi, theta, psi) [rad] and ``shifts [T, 2]`` [Å]
    (groups ``"angles"`` and ``"shifts"``). ``forward(volume, indices)`` returns the rotated,
    shifted volumes ``[B, Z, X, Y]`` of tilts ``indices [B]``.
    """

    def __init__(
        self,
        angles: Tensor,
        shifts: Tensor | None = None,
        voxel: Voxel = (1, 1, 1),
        centre: tuple[float, float, float] | None = None,
    ):
        super().__init__()
        self.angles = nn.Parameter(angles.clone())
        shifts = torch.zeros_like(angles[:, :2]) if shifts is None else shifts.clone()
        self.shifts = nn.Parameter(shifts)
        self.voxel = voxel
        self.centre = centre

    def rotation(self, indices: Tensor | None = None) -> Tensor:
        angles = self.angles if indices is None else self.angles[indices]
        return euler_matrix(angles[:, 0], angles[:, 1], angles[:, 2])

    def forward(self, volume: Tensor, indices: Tensor | None = None) -> Tensor:
        shifts = self.shifts if indices is None else self.shifts[indices]
        return rotate_volume(volume, self.rotation(indices), shifts, self.voxel, self.centre)

    def project(self, volume: Tensor, indices: Tensor | None = None) -> Tensor:
        """Linear tomography forward model (paper 000 eq. 11): projections ``[B, X, Y]``."""
        return project(self(volume, indices), self.voxel[0])


def translation_gauge(shifts: Tensor, reference: Tensor, rotation: Tensor) -> Tensor:
    """The 3D translation ``s [3]`` Å that best explains ``reference - shifts`` (``[T, 2]``
    Å) as the projections ``(R_j s)_xy`` of rotations ``[T, 3, 3]`` (least squares): the
    part of a change of the shifts that a translation of the volume would undo."""
    a = rotation[:, :2, :].reshape(-1, 3)  # [2T, 3]
    b = (reference - shifts).reshape(-1, 1)
    return torch.linalg.lstsq(a.double(), b.double()).solution[:, 0].to(shifts.dtype)


def centred_shifts(shifts: Tensor, rotation: Tensor, offset: Tensor) -> Tensor:
    """Per-tilt shifts ``[T, 2]`` [Å] that describe the same projections once the volume's
    content at ``offset [3]`` (x, y, z) Å from the rotation centre is moved onto it: a point
    there projects to ``R_j offset + tau_j``, so ``tau_j <- tau_j + (R_j offset)_xy``. This
    fixes the gauge that data cannot: a 3D translation of the volume against all shifts."""
    return shifts + (rotation @ offset.to(rotation))[:, :2]
