"""Gaussian-atom renderer for local-orbital tomography (paper 004 eqs. 1-3).

Atom ``i`` with specimen-frame position ``x_i [3]`` [Å] (zero tilt), height ``H_i`` and width
``B_i`` [Å**2] appears at tilt ``j`` at ``u_ij = R_j (x_i - c) + c + (tau_x, tau_y, 0)``
(same rotation and centre as :mod:`reconstruct.tomography`) and contributes
``H_i exp(-((u - u_ij)**2 + (v - v_ij)**2) / B_i)`` to the projected slice that contains its
depth ``w_ij``. (Paper 004 eq. 2 prints the exponent without its minus sign.) Slices are
``n_slices`` equal intervals of ``slice_thickness`` centred on ``c_z``. The slice assignment is
piecewise constant, so there is no gradient along the beam within a slice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


def render_gaussian_slices(
    positions: Tensor,
    heights: Tensor,
    widths: Tensor,
    shape: tuple[int, int],
    sampling: tuple[float, float],
    n_slices: int,
    slice_thickness: float,
    centre_z: float,
) -> Tensor:
    """Projected slices ``[T, S, X, Y]`` of Gaussian atoms at lab positions ``[T, N, 3]``.

    ``heights [N]`` (units of the output, e.g. V Å or HAADF counts), ``widths [N]`` [Å**2];
    pixel ``(i, j)`` is at ``(i dx, j dy)``. Atoms outside the slab contribute nothing.
    """
    dtype, device = positions.dtype, positions.device
    x = torch.arange(shape[0], device=device, dtype=dtype) * sampling[0]
    y = torch.arange(shape[1], device=device, dtype=dtype) * sampling[1]
    gx = torch.exp(-((x - positions[..., 0, None]) ** 2) / widths[:, None])  # [T, N, X]
    gy = torch.exp(-((y - positions[..., 1, None]) ** 2) / widths[:, None])  # [T, N, Y]
    top = centre_z - n_slices * slice_thickness / 2
    index = torch.floor((positions[..., 2].detach() - top) / slice_thickness).long()  # [T, N]
    weighted = gx * heights[:, None]
    slices = []
    for k in range(n_slices):  # loop over the few slices, not over atoms or positions
        mask = (index == k).to(dtype)[..., None]
        slices.append(torch.bmm((weighted * mask).transpose(1, 2), gy))
    return torch.stack(slices, dim=1)


class GaussianAtoms(nn.Module):
    """Learnable atoms (group ``"atoms"``): ``positions [N, 3]`` [Å], ``heights [N]``,
    ``widths [N]`` [Å**2] (stored as ``log``-widths so that they stay positive)."""

    def __init__(self, positions: Tensor, heights: Tensor, widths: Tensor) -> None:
        super().__init__()
        self.positions = nn.Parameter(positions.clone())
        self.heights = nn.Parameter(heights.clone())
        self.log_widths = nn.Parameter(torch.log(widths.clone()))

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
