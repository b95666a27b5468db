"""Linear baselines from the ADF/HAADF tilt series: RESIRE and SIRT.

Forward model (shared pieces): rotate the volume (:class:`TiltSeriesGeometry`), project along
the beam, sample the projection at the scan positions (:func:`sample_bilinear`).

- RESIRE (Pham et al., used by paper 001): ``V <- max(0, V - dt sum_j P_j^T (P_j V - b_j))``
  with ``dt = step / (T nz v²)``, the inverse of the largest eigenvalue bound of ``P^T P``.
- SIRT: ``V <- V + lambda C P^T R (b - P V)``, ``R`` and ``C`` the inverse row and column sums
  of ``P`` (a preconditioned gradient step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reconstruct.data import TomoData
from reconstruct.fit import Problem, build_geometry, fit, nonnegative
from reconstruct.loop import GroupSettings
from reconstruct.result import Reconstruction
from reconstruct.sampling import sample_bilinear
from reconstruct.tomography import TiltSeriesGeometry
from reconstruct.variants.base import Variant, register_variant
from simulate.errors import ConfigError


@dataclass
class ResireConfig:
    """RESIRE: ``iterations`` full-batch steps of normalised size ``step`` (paper 001: 100)."""

    name: str = "resire"
    iterations: int = 100
    step: float = 1.0


@dataclass
class SirtConfig:
    """SIRT: ``iterations`` steps of relaxation ``relaxation``; optional positivity."""

    name: str = "sirt"
    iterations: int = 100
    relaxation: float = 1.0
    positivity: bool = False


class ProjectionTomography(nn.Module):
    """``forward() -> [T, X, Y]`` linear projections [V Å] of ``volume [Z, X, Y]`` [V] through
    the learnable ``geometry`` (groups ``object``, ``shifts``, ``angles``; paper 000 eq. 11)."""

    def __init__(self, shape: tuple[int, int, int], geometry: TiltSeriesGeometry) -> None:
        super().__init__()
        self.volume = nn.Parameter(torch.zeros(shape, device=geometry.angles.device))
        self.geometry = geometry

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"object": [self.volume], "angles": [self.geometry.angles],
                "shifts": [self.geometry.shifts]}

    def forward(self, volume: Tensor | None = None) -> Tensor:
        return self.geometry.project(self.volume if volume is None else volume)


class LinearTomography(ProjectionTomography):
    """``forward() -> [T, P]`` model ADF signals of the volume at ``coords [T, P, 2]`` (voxel
    pixel units; default: the scan positions)."""

    def __init__(self, data: TomoData, coords: Tensor | None = None) -> None:
        super().__init__(data.volume_shape, build_geometry(data))
        v = data.voxel_size
        self.register_buffer("coords", data.haadf_positions / v if coords is None else coords)

    def forward(self, volume: Tensor | None = None) -> Tensor:
        return sample_bilinear(super().forward(volume), self.coords)  # [T, X, Y] -> [T, P]


EDGE_FRACTION = 0.25  # ADF signal on a partial scan's edge, of its peak, that cuts the particle


def _check_covers(haadf: Tensor) -> None:
    """Refuse a scan that does not cover the particle: a partial (non-tiling) raster whose
    edge rows or columns carry more than :data:`EDGE_FRACTION` of the peak signal (above the
    background) at some tilt cuts the particle, and its projections cannot be fitted."""
    low = haadf.amin(dim=(1, 2), keepdim=True)
    img = (haadf - low) / (haadf.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-30)
    edge = torch.stack([img[:, 0].amax(-1), img[:, -1].amax(-1), img[:, :, 0].amax(-1),
                        img[:, :, -1].amax(-1)], -1).amax(-1)  # [T]
    worst = int(edge.argmax())
    if float(edge[worst]) > EDGE_FRACTION:
        raise ConfigError("scan.start/end", "a partial raster",
                          f"a scan that covers the particle: at tilt {worst} its edge carries "
                          f"{float(edge[worst]):.0%} of the peak ADF signal (at most "
                          f"{EDGE_FRACTION:.0%})")


def _measured(data: TomoData) -> tuple[Tensor, Tensor | None]:
    """The ADF signals ``[T, P]`` to fit and their coordinates (None: the scan positions).

    A raster coarser than the voxel is resampled bilinearly onto the voxel columns it covers,
    as one interpolates images to the reconstruction's pixel size before RESIRE:
    point-sampling the projection at a 2x coarser step would leave every other row and column
    of the volume unconstrained (a striped null space). A raster that tiles the cell is
    resampled periodically onto every column; a partial one onto the columns inside it, after
    :func:`_check_covers`.
    """
    t, v = data.n_tilts, data.voxel_size
    nx, ny = data.volume_shape[1:]
    if data.haadf.dim() != 3:
        return data.haadf.reshape(t, -1), None
    sx, sy = data.haadf.shape[1:]
    pos = data.haadf_positions.reshape(t, sx, sy, 2)
    step = torch.stack([pos[0, min(1, sx - 1), 0, 0] - pos[0, 0, 0, 0],
                        pos[0, 0, min(1, sy - 1), 1] - pos[0, 0, 0, 1]])
    shape = torch.tensor([sx, sy], device=step.device)
    tiles = torch.allclose(step * shape, torch.tensor([nx * v, ny * v], device=step.device),
                           rtol=1e-4)
    if not tiles:
        _check_covers(data.haadf)
    if bool((step <= v * (1 + 1e-6)).all()):
        return data.haadf.reshape(t, -1), None
    i, j = torch.meshgrid(torch.arange(nx, device=data.device),
                          torch.arange(ny, device=data.device), indexing="ij")
    pix = torch.stack([i, j], -1).reshape(-1, 2).float() * v  # [nx ny, 2] Å
    in_scan = (pix[None] - pos[:, :1, 0]) / step  # [T, nx ny, 2] scan-pixel units
    if not tiles:  # the columns inside the raster of every tilt
        inside = ((in_scan > -1e-4) & (in_scan < shape - 1 + 1e-4)).all(-1).all(0)
        pix, in_scan = pix[inside], in_scan[:, inside].clamp(min=0).minimum(shape - 1)
    return sample_bilinear(data.haadf, in_scan), (pix / v).expand(t, -1, -1)


def _fit(model: LinearTomography, loss, b: Tensor, lr: float, cfg: ResireConfig | SirtConfig,
         positivity: bool, seed: int, progress: bool) -> Reconstruction:
    problem = Problem(model, loss, [None], {"object": GroupSettings(lr=lr, optimizer="sgd")},
                      estimates=lambda m: {"volume": m.volume},
                      constraints=[nonnegative("volume")] if positivity else [],
                      residual=lambda m: [(b, m())])
    return fit(problem, cfg.iterations, seed, progress)


def run_resire(data: TomoData, cfg: ResireConfig, seed: int, progress: bool) -> Reconstruction:
    """RESIRE through the shared loop (plain gradient steps, positivity projection)."""
    b, coords = _measured(data)
    model = LinearTomography(data, coords)
    nz, v = data.volume_shape[0], data.voxel_size
    dt = cfg.step / (data.n_tilts * nz * v**2)

    def loss(m: LinearTomography, _batch) -> Tensor:
        return 0.5 * ((m() - b) ** 2).sum()

    return _fit(model, loss, b, dt, cfg, True, seed, progress)


def resire_volume(data: TomoData, iterations: int = 100, step: float = 1.0, seed: int = 0
                  ) -> Tensor:
    """The RESIRE volume ``[nz, nx, ny]`` of ``data`` (arbitrary units, on the data's voxel
    grid): a public start for methods that refine it (LOT's ``init: resire``)."""
    result = run_resire(data, ResireConfig(iterations=iterations, step=step), seed, False)
    return torch.as_tensor(result.volume)


def run_sirt(data: TomoData, cfg: SirtConfig, seed: int, progress: bool) -> Reconstruction:
    """SIRT: the row weights enter the loss, the column weights precondition the gradient."""
    b, coords = _measured(data)
    model = LinearTomography(data, coords)
    ones = torch.ones_like(model.volume, requires_grad=True)
    row = model(ones).detach()  # P 1: [T, P]
    (col,) = torch.autograd.grad(model(ones).sum(), ones)  # P^T 1: [Z, X, Y]
    r = torch.where(row > 0, 1.0 / row, torch.zeros_like(row))
    c = torch.where(col > 0, 1.0 / col, torch.zeros_like(col))
    model.volume.register_hook(lambda g: g * c)

    def loss(m: LinearTomography, _batch) -> Tensor:
        return 0.5 * (r * (m() - b) ** 2).sum()

    return _fit(model, loss, b, cfg.relaxation, cfg, cfg.positivity, seed, progress)


def _check_linear(cfg: ResireConfig | SirtConfig) -> None:
    if cfg.iterations < 1:
        raise ConfigError("algorithm.iterations", cfg.iterations, "an integer >= 1")
    size = cfg.step if isinstance(cfg, ResireConfig) else cfg.relaxation
    if not 0 < size < 2:
        raise ConfigError("algorithm.step/relaxation", size, "a value in (0, 2)")


register_variant(Variant("resire", ResireConfig, {"haadf"}, run_resire, _check_linear))
register_variant(Variant("sirt", SirtConfig, {"haadf"}, run_sirt, _check_linear))
