"""LOT (paper 004): local-orbital tomography of a HAADF tilt series.

Atoms are Gaussian orbitals (shared :class:`GaussianAtoms`: position, height H_i, width B_i)
with per-tilt drifts (u_j, v_j) (group ``shifts``). Tilt ``j``'s image is the sum over slices
of the probe intensity at the slice's depth convolved with the slice's projection (eq. 4,
shared :class:`DepthDependentInteraction`), sampled at the scan positions. ``interaction``:
``direct`` (p = 1), ``rigid`` (probes of the microscope parameters through depth, eqs. 7-10,
fixed) or ``adaptive`` (the same, then optimised). The adaptive probes stay probes by default
(``probe_model: optics``, :class:`reconstruct.haadf.OpticalDepthKernels`): a learnable
defocus and a per-depth Gaussian blur, 1 + n parameters, recorded in ``info``; ``pixels``
frees every kernel pixel within a support instead (n X Y parameters, which at 8 tilts fit the
data better but place the atoms worse). Data are normalised by eq. 6, the loss is
eq. 5's mean square, the quality eq. 11's R-factor (computed by :func:`fit`).

Initialisation (``init``):

- ``grid`` (paper 004): orbitals on a regular grid of spacing ``d_est`` inside the visual hull
  of the series (points that project onto signal above ``hull_threshold`` at every tilt),
  at most ``d_est / 2`` wide (B <= d_est**2 / 4, so that neighbours are nearly orthogonal and
  the linear fit converges). Their heights alone are fitted for ``init_iterations`` (H >= 0,
  line search), then orbitals closer than
  ``0.75 min_distance`` are merged (:func:`merge_orbitals`: strongest first, height-weighted
  centroid, summed height) and merged orbitals whose height is below ``prune_fraction`` of
  the 99th percentile are dropped.
- ``resire``: peaks of a RESIRE volume (:func:`reconstruct.variants.linear.resire_volume`,
  traced by :func:`metrics.tracing.trace_atoms` at ``min_distance``).

Then positions, heights, widths and drifts are refined for ``iterations``; halfway, orbitals
that converged onto one atom (closer than ``0.75 min_distance``) are merged and empty ones
(height below ``prune_fraction`` of the 99th percentile) pruned. Species are assigned from
the integrated intensities ``H pi B`` with the suite's classifier
(:func:`metrics.classify.classify_species`, a non-atom class when it is separated) over the
specimen's species (``species``, default the dataset's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from reconstruct.atoms import (
    GaussianAtoms,
    assign_species,
    cell_centre_A,
    grid_points,
    merge_orbitals,
    visual_hull,
)
from reconstruct.data import TomoData
from reconstruct.fit import Problem, fit
from reconstruct.haadf import MODES, PROBE_MODELS, DepthDependentInteraction, build_interaction
from reconstruct.loop import GroupSettings, History, index_batches
from reconstruct.optics import energy2wavelength
from reconstruct.result import AtomsEstimate, Reconstruction
from reconstruct.sampling import fast_size, sample_bilinear
from reconstruct.variants.base import Variant, register_variant
from simulate.errors import ConfigError

INITS = ("grid", "resire")
WIDEST = 3.0  # the widest orbital, in units of the starting width B
MERGE = 0.75  # merge radius in units of min_distance (no two atoms are closer than that)


@dataclass
class LOTConfig:
    """LOT parameters. Lengths in Å, ``width`` B in Å**2. Learning rates (Adam, per
    iteration): ``position_lr`` Å, ``height_lr`` in log H pi B, ``width_lr`` in log B,
    ``shift_lr`` Å (0 = fixed); ``probe_lr`` is the pixel kernels' first line-search step (0 =
    fixed, i.e. rigid); ``optics_lr`` the optical kernels' Adam rate (defocus in nm, blur in
    Å; ``probe_model`` ``optics`` | ``pixels``). All but the pixel kernels' fall
    geometrically to ``lr_decay`` times their start over the refinement (fast first steps,
    precise last ones). ``pixel`` is the rendering pixel (0: see :func:`render_grid`);
    ``tilt_batch`` tilts per update (0 = all)."""

    name: str = "lot"
    interaction: str = "adaptive"
    iterations: int = 300
    init: str = "grid"
    d_est: float = 1.0
    init_iterations: int = 40
    hull_threshold: float = 0.05
    min_distance: float = 1.5
    prune_fraction: float = 0.05
    width: float = 0.5
    slice_thickness: float = 2.0
    pixel: float = 0.0
    position_lr: float = 0.02
    height_lr: float = 0.05
    width_lr: float = 0.05
    lr_decay: float = 0.3
    shift_lr: float = 0.0
    probe_lr: float = 1.0
    probe_model: str = "optics"
    optics_lr: float = 0.2
    probe_start: int = 20
    tilt_batch: int = 0
    species: list[int] = field(default_factory=list)
    resire_iterations: int = 50


def normalise_series(images: Tensor) -> Tensor:
    """Paper 004 eq. 6: ``(I - min) / max`` over the whole series ``[T, ...]``."""
    return (images - images.min()) / images.max()


class LocalOrbitalTomography(nn.Module):
    """``forward(tilts [B]) -> [B, P]`` HAADF signals at the scan positions.

    Atoms (groups ``atoms`` positions, ``heights``, ``widths``) rendered into ``n_slices``
    slices of the lab frame on a ``[X, Y]`` grid of ``pixel`` Å, passed through the
    interaction (group ``probe`` when adaptive) and sampled bilinearly at ``coords [T, P, 2]``
    (pixel units). Drifts ``shifts [T, 2]`` Å (group ``shifts``)."""

    def __init__(self, data: TomoData, atoms: GaussianAtoms, interaction: DepthDependentInteraction,
                 pixel: float, shape: tuple[int, int], n_slices: int,
                 shifts: Tensor | None = None) -> None:
        super().__init__()
        self.atoms, self.interaction = atoms, interaction
        self.pixel, self.shape, self.n_slices = pixel, shape, n_slices
        self.thickness = data.volume_shape[0] * data.voxel_size / n_slices
        self.register_buffer("angles", data.euler.clone())
        self.register_buffer("centre", cell_centre_A(data))
        self.register_buffer("coords", data.haadf_positions / pixel)
        self.shifts = nn.Parameter(data.shifts.clone() if shifts is None else shifts.clone())

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        a = self.atoms
        heights = a.log_integrals if a.by_integral else a.heights
        groups = {"atoms": [a.positions], "heights": [heights], "widths": [a.log_widths],
                  "shifts": [self.shifts]}
        if self.interaction.mode == "adaptive":
            groups["probe"] = self.interaction.probe_parameters()
        return groups

    def images(self, tilts: Tensor) -> Tensor:
        """Model images ``[B, X, Y]`` of ``tilts [B]``."""
        slices = self.atoms(self.angles[tilts], self.shifts[tilts], self.centre, self.shape,
                            (self.pixel, self.pixel), self.n_slices, self.thickness)
        return self.interaction(slices)

    def forward(self, tilts: Tensor) -> Tensor:
        return sample_bilinear(self.images(tilts), self.coords[tilts])


def _stage(model: LocalOrbitalTomography, target: Tensor, cfg: LOTConfig, iterations: int,
           settings: dict[str, GroupSettings], seed: int, progress: bool) -> Reconstruction:
    """One call of the shared loop: eq. 5's loss over tilt batches, H >= 0, B at least half a
    pixel squared (a narrower Gaussian aliases on the rendering grid) and at most ``WIDEST``
    times the starting width (an orbital that wide is no atom, and the widest sets every
    atom's rendering window),
    drifts of zero mean (a common drift is a translation of the atoms), kernels >= 0 with
    unit sum."""
    batch = cfg.tilt_batch or target.shape[0]

    def loss(m: LocalOrbitalTomography, tilts: Tensor) -> Tensor:
        return 0.5 * (m(tilts) - target[tilts]).square().mean()

    narrowest = math.log(model.pixel**2 / 2)  # B >= pixel**2 / 2: sigma >= pixel / 2
    widest = math.log(WIDEST * cfg.width)

    def constrain(m: LocalOrbitalTomography, _iteration: int) -> None:
        if not m.atoms.by_integral:
            m.atoms.heights.clamp_(min=0.0)
        m.atoms.log_widths.clamp_(min=narrowest, max=widest)
        m.shifts.sub_(m.shifts.mean(0))
        if m.interaction.mode == "adaptive" and m.interaction.optics is None:
            k = m.interaction.kernels.clamp_(min=0.0).mul_(m.interaction.support)
            k.div_(k.sum((-2, -1), keepdim=True).clamp_min(1e-30))

    def residual(m: LocalOrbitalTomography):
        for j in range(target.shape[0]):
            tilts = torch.tensor([j], device=target.device)
            yield target[tilts], m(tilts)

    problem = Problem(model, loss, index_batches(target.shape[0], batch, device=target.device),
                      settings, estimates=lambda m: {}, constraints=[constrain],
                      residual=residual)
    return fit(problem, iterations, seed, progress)


def _settings(cfg: LOTConfig, model: LocalOrbitalTomography, heights_only: bool,
              offset: int) -> dict[str, GroupSettings]:
    """Adam settings (heights as log-integrals, so their rate is relative); the adaptive
    kernels and the grid's heights-only stage (a linear problem in H >= 0) take backtracking
    gradient steps (``probe_lr`` is the first trial step)."""
    if heights_only:  # a linear least-squares problem: gradient steps with a line search
        return {"heights": GroupSettings(1.0, optimizer="line_search")}
    decay = cfg.lr_decay ** (1 / max(cfg.iterations, 1))
    out = {"heights": GroupSettings(cfg.height_lr * decay**offset, lr_decay=decay),
           "atoms": GroupSettings(cfg.position_lr * decay**offset, lr_decay=decay),
           "widths": GroupSettings(cfg.width_lr * decay**offset, lr_decay=decay)}
    if cfg.shift_lr > 0:
        out["shifts"] = GroupSettings(cfg.shift_lr * decay**offset, lr_decay=decay)
    optics = cfg.probe_model == "optics"
    if cfg.interaction == "adaptive" and optics and cfg.optics_lr > 0:
        out["probe"] = GroupSettings(cfg.optics_lr * decay**offset, lr_decay=decay,
                                     start_iter=max(cfg.probe_start - offset, 0))
    elif cfg.interaction == "adaptive" and not optics and cfg.probe_lr > 0:  # line search:
        # Adam's per-pixel steps would lift the kernels' faint tails as much as their cores
        out["probe"] = GroupSettings(cfg.probe_lr, optimizer="line_search",
                                     start_iter=max(cfg.probe_start - offset, 0))
    return out


def _rescale(model: LocalOrbitalTomography, target: Tensor) -> None:
    """Scale all heights by the least-squares factor between model and data."""
    with torch.no_grad():
        tilts = torch.arange(target.shape[0], device=target.device)
        m = model(tilts)
        scale = ((m * target).sum() / m.square().sum().clamp_min(1e-30)).clamp_min(1e-30)
        if model.atoms.by_integral:
            model.atoms.log_integrals.add_(torch.log(scale))
        else:
            model.atoms.heights.mul_(scale)


def _prune(atoms: GaussianAtoms, cfg: LOTConfig, width: float | None = None
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Merge orbitals within ``MERGE * min_distance`` of a stronger one, then drop those whose
    integrated intensity ``H B`` is below ``prune_fraction`` of the 99th percentile; merged
    orbitals get ``width`` (default the median width)."""
    h, b = atoms.heights.detach().clamp_min(0), atoms.widths.detach()
    pos, merged = merge_orbitals(atoms.positions.detach(), h * b, MERGE * cfg.min_distance)
    width = torch.full_like(merged, float(b.median()) if width is None else width)
    keep = merged >= cfg.prune_fraction * torch.quantile(merged, 0.99)
    return pos[keep], merged[keep] / width[keep], width[keep]


def initial_atoms(data: TomoData, target: Tensor, cfg: LOTConfig) -> Tensor:
    """Starting positions ``[N, 3]`` [Å]: the ``d_est`` grid inside the visual hull, or the
    traced peaks of a RESIRE volume (``init``)."""
    v = data.voxel_size
    nz, nx, ny = data.volume_shape
    if cfg.init == "resire":
        from metrics.tracing import trace_atoms
        from reconstruct.variants.linear import resire_volume

        vol = resire_volume(data, cfg.resire_iterations).cpu().double().numpy()
        traced = trace_atoms(vol, v, (0.0, 0.0, v / 2), min_distance=cfg.min_distance,
                             threshold=cfg.prune_fraction * float(vol.max()))
        return torch.as_tensor(traced.positions, dtype=torch.float32, device=data.device)
    grid = grid_points((nx * v, ny * v, nz * v), cfg.d_est, margin=cfg.d_est,
                       device=data.device)
    return grid[visual_hull(grid, data, target, cfg.hull_threshold, cfg.min_distance)]


def build_lot_model(data: TomoData, cfg: LOTConfig, positions: Tensor, heights: Tensor,
                    widths: Tensor, interaction: DepthDependentInteraction,
                    shifts: Tensor | None = None, by_integral: bool = True
                    ) -> LocalOrbitalTomography:
    """The LOT model of ``data`` on ``cfg``'s rendering grid (:func:`render_grid`): orbitals at
    ``positions [N, 3]`` Å with ``heights [N]`` and ``widths [N]`` (Å²; ``by_integral``: the
    integrals ``H B`` are the parameters), the ``interaction`` (:func:`build_interaction`) and
    per-tilt drifts ``shifts [T, 2]`` Å (None: the data's)."""
    pixel, shape, n_slices = render_grid(data, cfg)
    atoms = GaussianAtoms(positions, heights, widths, by_integral).to(data.device)
    return LocalOrbitalTomography(data, atoms, interaction, pixel, shape, n_slices, shifts)


def render_grid(data: TomoData, cfg: LOTConfig) -> tuple[float, tuple[int, int], int]:
    """The rendering pixel [Å], the image shape ``(X, Y)`` over the cell and the number of
    slices through the cell depth (thickness at most ``slice_thickness``). ``pixel`` 0: at
    most the probe intensity's Nyquist pixel ``lambda / (4 alpha)`` (or the voxel if finer),
    on a grid of fast FFT length (non-square cells: the x pixel)."""
    nz, nx, ny = data.volume_shape
    v = data.voxel_size
    n_slices = max(1, math.ceil(nz * v / cfg.slice_thickness))
    if cfg.pixel:
        return cfg.pixel, (round(nx * v / cfg.pixel), round(ny * v / cfg.pixel)), n_slices
    finest = min(v, energy2wavelength(data.energy) / (4 * data.semiangle))
    shape = (fast_size(math.ceil(nx * v / finest)), fast_size(math.ceil(ny * v / finest)))
    return nx * v / shape[0], shape, n_slices


def _join(stages: list[Reconstruction]) -> History:
    history = History()
    for r in stages:
        history.loss += r.history.loss
        history.seconds += r.history.seconds
    return history


def run_lot(data: TomoData, cfg: LOTConfig, seed: int, progress: bool) -> Reconstruction:
    """Initialise (grid + heights-only fit + merge/prune, or RESIRE peaks), refine, merge and
    prune halfway, refine, then assign species from ``H pi B``."""
    target = normalise_series(data.haadf.reshape(data.n_tilts, -1))
    pixel, shape, n_slices = render_grid(data, cfg)
    interaction = build_interaction(data, cfg.interaction, shape, pixel, n_slices,
                                    cfg.probe_model)
    pos = initial_atoms(data, target, cfg)
    ones = torch.ones(len(pos), device=data.device)
    grid = cfg.init == "grid" and cfg.init_iterations > 0
    width = min(cfg.width, cfg.d_est**2 / 4) if grid else cfg.width
    model = build_lot_model(data, cfg, pos, ones, ones * width, interaction, None, not grid)
    _rescale(model, target)
    stages, counts = [], [len(pos)]
    if grid:
        stages.append(_stage(model, target, cfg, cfg.init_iterations,
                             _settings(cfg, model, True, 0), seed, progress))
        model = build_lot_model(data, cfg, *_prune(model.atoms, cfg, cfg.width), interaction,
                       model.shifts.detach())
        counts.append(len(model.atoms.heights))
    first = cfg.iterations // 2
    for k, n in enumerate((first, cfg.iterations - first)):
        if k:
            model = build_lot_model(data, cfg, *_prune(model.atoms, cfg), model.interaction,
                           model.shifts.detach())
            counts.append(len(model.atoms.heights))
        stages.append(_stage(model, target, cfg, n, _settings(cfg, model, False, k * first),
                             seed, progress))
    return _result(model, stages, counts, data, cfg)


def _result(model: LocalOrbitalTomography, stages: list[Reconstruction], counts: list[int],
            data: TomoData, cfg: LOTConfig) -> Reconstruction:
    atoms = model.atoms
    h, b = atoms.heights.detach(), atoms.widths.detach()
    species = list(cfg.species) or list(data.species) or [1]
    numbers = torch.zeros(len(h), dtype=torch.long)
    if len(h) >= len(species) + 1:
        numbers = torch.as_tensor(assign_species((h * math.pi * b).cpu().double().numpy(),
                                                 species))
    last = stages[-1]
    info = {"orbitals_per_stage": counts, "interaction": cfg.interaction,
            "final_loss": last.info.get("final_loss")}
    if (optics := model.interaction.optics) is not None:  # the refined optics, recorded
        info["probe_defocus_change_A"] = 10 * float(optics.defocus_nm.detach())
        info["probe_blur_A"] = optics.blur.detach().abs().cpu().tolist()
    history = _join(stages)
    return Reconstruction(
        history=history, r_factor=last.r_factor,
        seconds_per_iteration=history.seconds / max(len(history.loss), 1),
        atoms=AtomsEstimate(atoms.positions.detach(), numbers, h, b), info=info)


def _check_lot(cfg: LOTConfig) -> None:
    choices = {"interaction": (cfg.interaction, MODES), "init": (cfg.init, INITS),
               "probe_model": (cfg.probe_model, PROBE_MODELS)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"algorithm.{key}", value, f"one of {list(allowed)}")
    for key in ("iterations", "d_est", "min_distance", "width", "slice_thickness"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), "a value > 0")
    for key in ("init_iterations", "pixel", "tilt_batch", "position_lr", "height_lr",
                "width_lr", "shift_lr", "probe_lr", "optics_lr", "probe_start",
                "hull_threshold"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), "a value >= 0")
    if not 0 < cfg.lr_decay <= 1:
        raise ConfigError("algorithm.lr_decay", cfg.lr_decay, "a value in (0, 1]")
    if not 0 <= cfg.prune_fraction < 1:
        raise ConfigError("algorithm.prune_fraction", cfg.prune_fraction, "a value in [0, 1)")
    if any(int(z) < 1 for z in cfg.species):
        raise ConfigError("algorithm.species", cfg.species, "atomic numbers >= 1")


register_variant(Variant("lot", LOTConfig, {"haadf"}, run_lot, _check_lot))
