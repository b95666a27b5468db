"""Registry cases (``tests/operator_registry.py``): tomographic rotation, binning and
projection, bilinear sampling, the HAADF depth-dependent interaction, Gaussian atoms."""

from __future__ import annotations

from functools import partial

import torch
from operator_registry import (
    F64,
    Case,
    rand,
    randn,
    register,
)
from torch import Tensor

from reconstruct import (
    DepthDependentInteraction,
    GaussianAtoms,
    OpticalDepthKernels,
    TiltSeriesGeometry,
    bin_slices,
    bin_slices_adjoint,
    ddi_adjoint,
    ddi_forward,
    euler_matrix,
    project,
    project_adjoint,
    render_gaussian_slices,
    rotate_volume,
    rotate_volume_adjoint,
    transform_atoms,
)
from reconstruct.sampling import sample_bilinear, sample_bilinear_adjoint

# --- tomography: rotations, binning, projection ---------------------------------------------

ANGLES = torch.tensor([[0.1, 0.5, -0.2], [0.0, -0.9, 0.3]], dtype=F64)  # (phi, theta, psi) rad
ROTATION = euler_matrix(ANGLES[:, 0], ANGLES[:, 1], ANGLES[:, 2])
TILT_SHIFTS = torch.tensor([[0.4, -0.3], [1.1, 0.2]], dtype=F64)  # Å
VOXEL = (0.8, 1.0, 1.2)  # anisotropic (dz, dx, dy) Å


@register("euler_matrix", euler_matrix)
def _euler_matrix() -> Case:
    angles = torch.tensor([0.1, -0.4, 0.7], dtype=F64)  # (phi, theta, psi) rad
    return Case(lambda a: euler_matrix(a[0], a[1], a[2]), (angles,))


@register("rotate_volume", rotate_volume, rotate_volume_adjoint, euler_matrix, linear=True)
def _rotate_volume() -> Case:
    """Two tilts with shifts and an anisotropic voxel."""
    return Case(
        lambda v: rotate_volume(v, ROTATION, TILT_SHIFTS, VOXEL),
        (randn(6, 7, 8),),
        lambda r: rotate_volume_adjoint(r, ROTATION, TILT_SHIFTS, VOXEL),
    )


@register("rotate_volume-unshifted_channels", rotate_volume, rotate_volume_adjoint, linear=True)
def _rotate_volume_channels() -> Case:
    """No shifts, unit voxel, a channel axis ``[C, Z, X, Y]``."""
    return Case(
        lambda v: rotate_volume(v, ROTATION, None, (1, 1, 1)),
        (randn(2, 5, 6, 7),),
        lambda r: rotate_volume_adjoint(r, ROTATION, None, (1, 1, 1)),
    )


@register("tomographic_projector", rotate_volume, rotate_volume_adjoint, project,
          project_adjoint, linear=True)  # fmt: skip
def _tomographic_projector() -> Case:
    """The linear tomographic projector: rotate, then sum along the beam."""
    return Case(
        lambda v: project(rotate_volume(v, ROTATION, TILT_SHIFTS, VOXEL), VOXEL[0]),
        (randn(6, 7, 8),),
        lambda q: rotate_volume_adjoint(project_adjoint(q, 6, VOXEL[0]), ROTATION, TILT_SHIFTS,
                                        VOXEL),
    )  # fmt: skip


@register("tilt_series_geometry", TiltSeriesGeometry, rotate_volume, euler_matrix)
def _tilt_series_geometry() -> Case:
    """Rotated volumes wrt the volume, the Euler angles and the shifts."""
    geometry = TiltSeriesGeometry(
        torch.tensor([[0.05, 0.31, -0.12], [0.0, -0.52, 0.07]], dtype=F64),
        torch.tensor([[0.13, -0.27], [0.31, 0.08]], dtype=F64),
        voxel=(0.9, 1.0, 1.1),
    )
    angles, shifts = geometry.angles.detach().clone(), geometry.shifts.detach().clone()

    def forward(v: Tensor, a: Tensor, s: Tensor) -> Tensor:
        return torch.func.functional_call(geometry, {"angles": a, "shifts": s}, (v,))

    return Case(forward, (rand(5, 6, 7, seed=7), angles, shifts))


@register("bin_slices", bin_slices, bin_slices_adjoint, linear=True)
def _bin_slices() -> Case:
    return Case(
        lambda v: bin_slices(v, 4, 0.7),
        (randn(2, 12, 4, 5),),
        lambda s: bin_slices_adjoint(s, 12, 0.7),
    )


@register("project", project, project_adjoint, linear=True)
def _project() -> Case:
    x = randn(3, 7, 4, 5)
    return Case(lambda v: project(v, 0.4), (x,), lambda p: project_adjoint(p, 7, 0.4))


@register("sample_bilinear", sample_bilinear, sample_bilinear_adjoint, linear=True)
def _sample_bilinear() -> Case:
    """Periodic bilinear sampling at off-grid points (some beyond the image)."""
    coords = rand(2, 5, 2, seed=3) * 14 - 3.3
    return Case(
        lambda i: sample_bilinear(i, coords),
        (randn(2, 7, 9),),
        lambda v: sample_bilinear_adjoint(v, coords, (7, 9)),
    )


@register("sample_bilinear-image_and_coords", sample_bilinear)
def _sample_bilinear_both() -> Case:
    return Case(sample_bilinear, (randn(2, 7, 9), rand(2, 5, 2, seed=3) * 14 - 3.3))


# --- HAADF depth-dependent interaction ------------------------------------------------------

DDI_KERNELS = {
    "": randn(3, 8, 8, seed=2).abs(),  # [n, X, Y]
    "-per_tilt_kernels": randn(2, 3, 8, 8, seed=2).abs(),  # [T, n, X, Y]
    "-direct": None,  # p = 1: the plain sum over slices
}


def _ddi(kernels: Tensor | None) -> Case:
    return Case(
        lambda s: ddi_forward(s, kernels),
        (randn(2, 3, 8, 8),),
        lambda i: ddi_adjoint(i, kernels, 3),
    )


for _suffix, _kernels in DDI_KERNELS.items():
    register(f"ddi_forward{_suffix}", ddi_forward, ddi_adjoint, linear=True)(
        partial(_ddi, _kernels)
    )


@register("ddi-adaptive_kernels", DepthDependentInteraction, ddi_forward)
def _ddi_adaptive() -> Case:
    """The adaptive DDI module wrt the slices and its learnable kernels."""
    kernels = rand(3, 8, 8, seed=8)
    module = DepthDependentInteraction("adaptive", kernels)

    def forward(s: Tensor, k: Tensor) -> Tensor:
        return torch.func.functional_call(module, {"kernels": k}, (s,))

    return Case(forward, (randn(2, 3, 8, 8), kernels))


@register("ddi-optical_kernels", DepthDependentInteraction, OpticalDepthKernels, ddi_forward)
def _ddi_optical() -> Case:
    """The adaptive DDI with optical kernels wrt the slices, the defocus change and the blur."""
    depths = torch.tensor([2.0, 6.0, 10.0], dtype=F64)
    optics = OpticalDepthKernels((8, 8), 0.3, 300e3, 0.025, depths, {"C10": -5.0}, 1)
    module = DepthDependentInteraction("adaptive", None, optics)

    def forward(s: Tensor, defocus_nm: Tensor, blur: Tensor) -> Tensor:
        params = {"optics.defocus_nm": defocus_nm, "optics.blur": blur}
        return torch.func.functional_call(module, params, (s,))

    return Case(forward, (randn(2, 3, 8, 8), torch.tensor(0.3, dtype=F64),
                          torch.tensor([0.1, 0.2, 0.3], dtype=F64)))


# --- Gaussian atoms -------------------------------------------------------------------------

# generic points: the renderer's window is centred on the nearest pixel, so a coordinate at an
# exact half pixel (4.4 Å on a 0.8 Å grid) sits on its window switch, a jump of the truncated tail
ATOM_POSITIONS = torch.tensor([[2.1, 3.3, 2.9], [4.45, 2.2, 1.1], [3.0, 4.1, 4.2]], dtype=F64)
ATOM_HEIGHTS = torch.tensor([1.0, 2.0, 1.5], dtype=F64)
ATOM_WIDTHS = torch.tensor([0.5, 0.7, 0.6], dtype=F64)  # Å**2


@register("gaussian_atoms", GaussianAtoms, transform_atoms, render_gaussian_slices, euler_matrix)
def _gaussian_atoms() -> Case:
    """Rendered slices wrt positions, heights, (log-)widths, tilt angles and shifts."""
    atoms = GaussianAtoms(ATOM_POSITIONS, ATOM_HEIGHTS, ATOM_WIDTHS)
    angles = torch.tensor([[0.02, 0.3, -0.05], [0.0, -0.2, 0.01]], dtype=F64)
    shifts = torch.tensor([[0.1, -0.2], [0.0, 0.3]], dtype=F64)
    centre = torch.tensor([3.2, 3.2, 3.0], dtype=F64)
    params = ("positions", "heights", "log_widths")

    def forward(p: Tensor, h: Tensor, w: Tensor, a: Tensor, s: Tensor) -> Tensor:
        return torch.func.functional_call(
            atoms, dict(zip(params, (p, h, w), strict=True)),
            (a, s, centre, (8, 8), (0.8, 0.8), 2, 3.0),
        )  # fmt: skip

    values = tuple(getattr(atoms, n).detach().clone() for n in params)
    return Case(forward, (*values, angles, shifts))


@register("render_gaussian_slices", render_gaussian_slices)
def _render_gaussian_slices() -> Case:
    """Wrt lab-frame positions ``[T, N, 3]``."""

    def forward(q: Tensor) -> Tensor:
        return render_gaussian_slices(q, ATOM_HEIGHTS, ATOM_WIDTHS, (8, 8), (0.8, 0.8), 2, 3.0, 3.0)

    return Case(forward, (ATOM_POSITIONS[None].clone(),))


@register("transform_atoms", transform_atoms)
def _transform_atoms() -> Case:
    """Wrt positions, rotation matrices and shifts."""
    centre = torch.tensor([3.2, 3.2, 3.0], dtype=F64)
    return Case(
        lambda p, r, s: transform_atoms(p, r, s, centre),
        (ATOM_POSITIONS.clone(), ROTATION.clone(), TILT_SHIFTS.clone()),
    )
