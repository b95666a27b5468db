"""Paper 000's first two stages, each a variant: ``tcbf`` and ``sequential``.

- ``tcbf`` (stage a): the defocus of every tilt from its tilt-corrected bright field (shared
  :mod:`reconstruct.brightfield`), and the probe it implies.
- ``sequential`` (stage b): per tilt, ``fpp`` multislice ptychography (shared
  :mod:`reconstruct.variants.ptycho`) seeded with that probe; the summed slice potentials are
  2D projections [V Å]; then **JointLinearTomography** (Algorithm 2): the volume, the per-tilt
  shifts and the Euler angles fitted to the thresholded, downsampled projections with the
  differentiable rotation and projection (shared :class:`TiltSeriesGeometry`), shifts before
  angles (``joint_shifts_start < joint_angles_start``), from shifts that put the volume's
  centre of mass on the pivot (the projections' centres of mass); the 3D translation the fit
  drifts into, which data cannot fix, is removed (shared :func:`translation_gauge`); a last
  linear fit at full resolution, with that geometry held, gives the volume that seeds the
  end-to-end stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from reconstruct.brightfield import estimate_defocus
from reconstruct.data import TomoData
from reconstruct.fit import Problem, build_probe, cell_centre, fit, nonnegative
from reconstruct.loop import GroupSettings, History
from reconstruct.optics import energy2wavelength
from reconstruct.result import GeometryEstimate, Reconstruction
from reconstruct.tomography import TiltSeriesGeometry, centred_shifts, translation_gauge
from reconstruct.variants import ptycho
from reconstruct.variants.base import Variant, register_variant
from reconstruct.variants.linear import ProjectionTomography
from simulate.errors import ConfigError
from simulate.progress import progress_bar

DEFOCUS = ("estimate", "nominal")


@dataclass
class BrightFieldConfig:
    """tcBF defocus: searched over ``[-defocus_search, defocus_search]`` Å in
    ``defocus_candidates`` steps; ``defocus`` ``estimate`` (tcBF) or ``nominal`` (the data's)."""

    name: str = "tcbf"
    defocus: str = "estimate"
    defocus_search: float = 500.0
    defocus_candidates: int = 51


@dataclass
class SequentialConfig(BrightFieldConfig):
    """Per-tilt ``fpp`` (``fpp_*``: iterations, slices, object/probe/positions rates and
    starts, ``probe_modes``) and JointLinearTomography (``joint_*``): ``joint_threshold``
    (fraction of each projection's maximum subtracted, clipped at 0: flattens the background),
    ``joint_downsample`` (pixels averaged per axis), ``joint_iterations`` full-batch steps with
    the volume's normalised step ``joint_step`` and Adam on the shifts (Å) and angles (rad);
    ``linear_iterations`` full-resolution volume steps afterwards (geometry held)."""

    name: str = "sequential"
    fpp_iterations: int = 40
    fpp_slices: int = 4
    probe_modes: int = 1
    fpp_object_lr: float = 20.0
    fpp_probe_lr: float = 0.0
    fpp_probe_start: int = 10
    fpp_positions_lr: float = 0.0
    fpp_positions_start: int = 20
    joint_threshold: float = 0.05
    joint_downsample: int = 2
    joint_iterations: int = 300
    joint_step: float = 1.0
    joint_shifts_lr: float = 0.05
    joint_shifts_start: int = 10
    joint_angles_lr: float = 0.0
    joint_angles_start: int = 150
    linear_iterations: int = 60


def tilt_defocus(data: TomoData, cfg: BrightFieldConfig) -> Tensor:
    """Defocus ``[T]`` Å of each tilt's probe at the cell entrance. tcBF measures it at the
    specimen (its middle depth, the tilt pivot), ``nz v / 2`` below the entrance."""
    nominal = -float(data.aberrations.get("C10", 0.0))
    if cfg.defocus == "nominal":
        return torch.full((data.n_tilts,), nominal)
    nx, ny = data.volume_shape[1:]
    v, lam = data.voxel_size, energy2wavelength(data.energy)
    depth = data.volume_shape[0] * v / 2
    return torch.tensor([estimate_defocus(data.patterns[t], data.positions[t],
                                          (1 / (nx * v), 1 / (ny * v)), data.semiangle, lam,
                                          cfg.defocus_search, cfg.defocus_candidates).defocus
                         + depth for t in range(data.n_tilts)])


def with_defocus(data: TomoData, defocus: float) -> TomoData:
    """``data`` with its probe's defocus replaced (Å at the cell entrance)."""
    return dataclasses.replace(data, aberrations={**data.aberrations, "C10": -defocus})


def run_tcbf(data: TomoData, cfg: BrightFieldConfig, seed: int, progress: bool
             ) -> Reconstruction:
    """Stage (a) alone: the defocus per tilt and the probe of the tilt nearest 0°."""
    defocus = tilt_defocus(data, cfg)
    zero = ptycho.choose_projection(data, None)
    probe = build_probe(with_defocus(data, float(defocus[zero])))()
    return Reconstruction(history=History(), probe=probe,
                          info={"defocus_A": [round(float(d), 2) for d in defocus]})


def _linear_fit(target: Tensor, geometry: TiltSeriesGeometry, shape: tuple[int, int, int],
                settings: dict[str, GroupSettings], iterations: int, seed: int) -> Reconstruction:
    """Least squares ``0.5 |P V - b|²`` with V >= 0 through the shared loop."""
    model = ProjectionTomography(shape, geometry)
    problem = Problem(model, lambda m, _b: 0.5 * ((m() - target) ** 2).sum(), [None],
                      settings, estimates=lambda m: {"volume": m.volume},
                      constraints=[nonnegative("volume")], residual=lambda m: [(target, m())])
    return fit(problem, iterations, seed, False)


def projection_offsets(projections: Tensor, voxel: float, centre: tuple[float, float]
                       ) -> Tensor:
    """Centres of mass ``[T, 2]`` Å of ``projections [T, X, Y]`` (>= 0) from the pivot
    ``centre`` (index units). A linear projection carries the volume's centre of mass to its
    own, so with the volume's centred on the pivot (the gauge) they are the shifts: the
    start of the joint fit, however far the shifts are from nominal."""
    w = projections.clamp_min(0)
    total = w.sum(dim=(-2, -1)).clamp_min(1e-30)
    i = (torch.arange(w.shape[-2], device=w.device, dtype=w.dtype) - centre[0]) * voxel
    j = (torch.arange(w.shape[-1], device=w.device, dtype=w.dtype) - centre[1]) * voxel
    return torch.stack([(w.sum(-1) * i).sum(-1) / total, (w.sum(-2) * j).sum(-1) / total], -1)


def joint_linear(projections: Tensor, data: TomoData, cfg: SequentialConfig, seed: int = 0
                 ) -> tuple[Tensor, Tensor, Tensor, Reconstruction]:
    """Algorithm 2 on ``projections [T, nx, ny]`` V Å. Returns the volume ``[nz, nx, ny]`` V,
    the Euler angles ``[T, 3]`` rad, the shifts ``[T, 2]`` Å and the full-resolution fit (its
    history and R-factor)."""
    d, v = cfg.joint_downsample, data.voxel_size
    nz, nx, ny = data.volume_shape
    peak = projections.amax(dim=(-2, -1), keepdim=True)
    target = (projections - cfg.joint_threshold * peak).clamp_min(0)
    coarse = functional.avg_pool2d(target[:, None], d)[:, 0]  # [T, nx/d, ny/d]
    shape, voxel = (nz // d, nx // d, ny // d), d * v
    # coarse pixel I averages fine pixels d I .. d I + d - 1 (x at i v, z at (k + 1/2) v)
    c = cell_centre(data.volume_shape)
    centre = ((c[0] - (d - 1) / 2) / d, (c[1] - (d - 1) / 2) / d, (c[2] - (d - 1) / 2) / d)
    start = projection_offsets(target, v, c[1:])  # the shifts in the centred gauge
    geometry = TiltSeriesGeometry(data.euler, start, (voxel,) * 3, centre)
    dt = cfg.joint_step / (data.n_tilts * shape[0] * voxel**2)
    settings = {"object": GroupSettings(lr=dt, optimizer="sgd"),
                "shifts": GroupSettings(lr=cfg.joint_shifts_lr, start_iter=cfg.joint_shifts_start),
                "angles": GroupSettings(lr=cfg.joint_angles_lr,
                                        start_iter=cfg.joint_angles_start)}
    settings = {k: s for k, s in settings.items() if s.lr > 0}
    _linear_fit(coarse, geometry, shape, settings, cfg.joint_iterations, seed)  # fits geometry
    with torch.no_grad():  # undo the translation of the volume the fit drifted into
        rotation = geometry.rotation()
        shifts = centred_shifts(geometry.shifts, rotation,
                                translation_gauge(geometry.shifts, start, rotation))
    full = TiltSeriesGeometry(geometry.angles.detach(), shifts, (v,) * 3, c)
    dt = cfg.joint_step / (data.n_tilts * nz * v**2)
    final = _linear_fit(projections, full, (nz, nx, ny),
                        {"object": GroupSettings(lr=dt, optimizer="sgd")},
                        cfg.linear_iterations, seed)
    return torch.as_tensor(final.volume), full.angles.detach(), shifts.detach(), final


@dataclass
class SequentialResult:
    """What stage (b) hands on: ``volume [nz, nx, ny]`` V, ``euler [T, 3]`` rad, ``shifts
    [T, 2]`` Å, ``positions [T, P, 2]`` Å, ``probes`` ``[T, modes, M1, M2]``, ``defocus [T]``
    Å, and the last linear fit's ``history``."""

    volume: Tensor
    euler: Tensor
    shifts: Tensor
    positions: Tensor
    probes: Tensor
    defocus: Tensor
    info: dict
    history: History


def _fpp(cfg: SequentialConfig, tilt: int) -> ptycho.FPPConfig:
    return ptycho.FPPConfig(
        projection=tilt, iterations=cfg.fpp_iterations, n_slices=cfg.fpp_slices,
        probe_modes=cfg.probe_modes, object_lr=cfg.fpp_object_lr, probe_lr=cfg.fpp_probe_lr,
        probe_start=cfg.fpp_probe_start, positions_lr=cfg.fpp_positions_lr,
        positions_start=cfg.fpp_positions_start, post_align=False)


def sequential_stage(data: TomoData, cfg: SequentialConfig, seed: int, progress: bool
                     ) -> SequentialResult:
    """Stages (a) and (b): tcBF defocus, per-tilt ``fpp``, JointLinearTomography."""
    check_divides(data, cfg)
    defocus = tilt_defocus(data, cfg)
    projections, probes, positions, r = [], [], [], []
    for t in progress_bar(range(data.n_tilts), "fpp per tilt", enabled=progress):
        result = ptycho.run(with_defocus(data, float(defocus[t])), _fpp(cfg, t), seed, False)
        projections.append(torch.as_tensor(result.object_states).mean(0).sum(0))
        probes.append(torch.as_tensor(result.probe))
        positions.append(torch.as_tensor(result.positions)[0])
        r.append(round(float(result.r_factor), 4))
    volume, euler, shifts, linear = joint_linear(torch.stack(projections).to(data.device),
                                                 data, cfg, seed)
    info = {"defocus_A": [round(float(d), 2) for d in defocus], "fpp_r_factor": r,
            "linear_r_factor": float(linear.r_factor)}
    return SequentialResult(volume, euler, shifts, torch.stack(positions), torch.stack(probes),
                            defocus, info, linear.history)


def geometry_estimate(euler: Tensor, shifts: Tensor) -> GeometryEstimate:
    return GeometryEstimate(euler_deg=torch.rad2deg(euler.detach()), shifts=shifts.detach())


def run_sequential(data: TomoData, cfg: SequentialConfig, seed: int, progress: bool
                   ) -> Reconstruction:
    """Stage (b) alone: the linear-tomography volume and its alignment."""
    out = sequential_stage(data, cfg, seed, progress)
    zero = ptycho.choose_projection(data, None)
    return Reconstruction(history=out.history, volume=out.volume,
                          geometry=geometry_estimate(out.euler, out.shifts),
                          positions=out.positions, probe=out.probes[zero],
                          r_factor=out.info["linear_r_factor"], info=out.info)


def check_bright_field(cfg: BrightFieldConfig) -> None:
    if cfg.defocus not in DEFOCUS:
        raise ConfigError("algorithm.defocus", cfg.defocus, f"one of {DEFOCUS}")
    if not (cfg.defocus_search > 0 and cfg.defocus_candidates >= 3):
        raise ConfigError("algorithm.defocus_search/defocus_candidates",
                          (cfg.defocus_search, cfg.defocus_candidates), "> 0 Å and >= 3")


def check_sequential(cfg: SequentialConfig) -> None:
    check_bright_field(cfg)
    for key in ("fpp_iterations", "fpp_slices", "probe_modes", "joint_iterations",
                "joint_downsample", "linear_iterations"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), "an integer >= 1")
    for key in ("fpp_object_lr", "fpp_probe_lr", "fpp_positions_lr", "joint_shifts_lr",
                "joint_angles_lr"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), ">= 0 (0 = fixed)")
    if not 0 <= cfg.joint_threshold < 1:
        raise ConfigError("algorithm.joint_threshold", cfg.joint_threshold, "in [0, 1)")
    if not 0 < cfg.joint_step < 2:
        raise ConfigError("algorithm.joint_step", cfg.joint_step, "in (0, 2)")


def check_divides(data: TomoData, cfg: SequentialConfig) -> None:
    """The downsampling must divide the grid (refused before compute)."""
    if any(n % cfg.joint_downsample for n in data.volume_shape):
        raise ConfigError("algorithm.joint_downsample", cfg.joint_downsample,
                          f"a divisor of every grid axis {data.volume_shape}")


register_variant(Variant("tcbf", BrightFieldConfig, {"diffraction"}, run_tcbf,
                         check_bright_field))
register_variant(Variant("sequential", SequentialConfig, {"diffraction"}, run_sequential,
                         check_sequential))
