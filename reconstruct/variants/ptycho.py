"""FPP, APP, extended APP and mixed-object multislice ptychography (papers 002 and 003).

One composition of the shared layer serves all four: a :class:`SlicedObject` of ``K`` object
states × ``S`` slices (V Å) → the shared :class:`MultislicePtychography` (mixed-state probe,
scan positions, a :class:`Propagator` with a learnable tilt and slice thickness, the slab
centred in the cell) → incoherent far-field intensities, fitted by the shared loop with the
groups ``object``, ``probe``, ``positions``, ``tilt`` and ``slice_thickness``, each with its own
learning rate and start iteration (a group with ``lr = 0`` stays fixed).

| variant | learned besides the object (and, if asked, probe and positions) |
|---|---|
| ``fpp`` | nothing: fixed propagator (zero tilt, nominal thickness); slices post-aligned |
| ``app`` | the specimen tilt (θx, θy) and the slice thickness (paper 002 eq. 3) |
| ``app_map`` | a tilt per scan position with a smoothness penalty; optionally a thickness map |
| ``mixed_object`` | ``K`` object states from distinct random starts, full batch (paper 003) |

Everything else is configuration: ``mixed_object`` with ``tilt_lr > 0`` is mixed-object APP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from reconstruct.data import TomoData
from reconstruct.fit import Problem, build_probe, build_propagator, fit, nonnegative
from reconstruct.loop import GroupSettings, index_batches
from reconstruct.losses import LOSSES
from reconstruct.multislice import MultislicePtychography
from reconstruct.propagation import SlicedObject
from reconstruct.regularize import (
    align_slices,
    butterworth_z,
    kz_filter,
    local_slice_shifts,
    shift_field,
    slice_shifts,
    tilt_smoothness,
    window_signal,
)
from reconstruct.result import Reconstruction
from reconstruct.scanning import fourier_shift, raster_shape
from reconstruct.variants.base import Variant, register_variant
from simulate.errors import ConfigError

REGULARIZERS = ("none", "kz", "butterworth")
OBJECT_OPTIMIZERS = ("adam", "sgd", "line_search")
MRAD = 1e-3


@dataclass
class FPPConfig:
    """Multislice ptychography of one 4D-STEM dataset (lengths Å, tilts mrad, ``lr`` per Adam
    step in the group's units: V Å, Å, rad): of a tilt series, projection ``projection``
    (None = the one nearest 0°).

    ``n_slices`` slices through ``thickness`` (the starting specimen thickness; None = the
    cell depth), centred at the cell's middle depth. ``probe_modes`` mixed-state probe modes
    (``orthogonalize_probe``: SVD-orthogonalised after each update); ``object_states`` states
    started from uniform random values in [0, ``state_noise``) V Å: with
    ``state_perturbation = p`` one start common to all states plus a per-state uniform
    perturbation in [0, ``p x state_noise``) (so that only the data can pull the states apart);
    with ``p = null`` an independent start per state. ``state_split = N > 0`` (with ``p``)
    starts the states equal and adds the perturbation after iteration ``N - 1``, once the
    common object has converged towards the best single object. ``loss``
    ``amplitude`` or ``poisson``; ``batch_size`` positions per update (None = full batch).
    Groups: ``*_lr`` (0 = fixed) and ``*_start`` (first iteration updated); ``object_optimizer``
    ``adam``, ``sgd`` or ``line_search`` (backtracking gradient descent, ``object_lr`` its first
    step; paper 003 used plain gradient descent). ``initial_tilt``
    (θx, θy); ``tilt_map`` one tilt per position with ``tilt_smoothness`` (weight of the mean
    squared neighbour difference per mrad², in units of the starting data loss);
    ``thickness_map`` one thickness per position. ``tilt_from_slices = N`` (with a learned
    tilt) moves, every N iterations, the tilt that the slices' relative shifts imply into the
    propagator and re-aligns the slices (:func:`regauge_tilt`).
    ``regularizer`` after each update: ``kz`` (``kz_beta``, blended with ``kz_strength``) or
    ``butterworth`` along z; ``positivity`` keeps V >= 0 (phase positivity); ``post_align``
    aligns the slices by cross-correlation (the FPP baseline of paper 002), each by at most
    ``post_align_max_shift`` Å (below half a lattice period, or a crystal aligns to the wrong
    repeat); the slope of those shifts along z is FPP's tilt estimate (paper 002 Fig. 5)."""

    name: str = "fpp"
    projection: int | None = None
    iterations: int = 100
    n_slices: int = 4
    thickness: float | None = None
    probe_modes: int = 1
    orthogonalize_probe: bool = True
    object_states: int = 1
    state_noise: float = 0.0
    state_perturbation: float | None = None
    state_split: int = 0
    loss: str = "amplitude"
    batch_size: int | None = None
    chunk_size: int | None = None
    object_lr: float = 20.0
    object_start: int = 0
    object_optimizer: str = "adam"
    probe_lr: float = 0.0
    probe_start: int = 10
    positions_lr: float = 0.0
    positions_start: int = 20
    tilt_lr: float = 0.0
    tilt_start: int = 0
    thickness_lr: float = 0.0
    thickness_start: int = 0
    initial_tilt: list[float] = field(default_factory=lambda: [0.0, 0.0])
    tilt_map: bool = False
    thickness_map: bool = False
    tilt_smoothness: float = 0.0
    tilt_from_slices: int = 0
    regularizer: str = "none"
    kz_beta: float = 1.0
    kz_strength: float = 0.1
    butterworth_cutoff: float = 0.5
    butterworth_order: int = 4
    positivity: bool = True
    post_align: bool = True
    post_align_max_shift: float = 1.0
    divergence_factor: float = 10.0


@dataclass
class APPConfig(FPPConfig):
    """APP: the tilt and the slice thickness learned in the propagator; no post-alignment."""

    name: str = "app"
    tilt_lr: float = 5e-4
    tilt_start: int = 10
    thickness_lr: float = 0.02
    thickness_start: int = 10
    tilt_from_slices: int = 10
    post_align: bool = False


@dataclass
class APPMapConfig(APPConfig):
    """Extended APP: a tilt map (one tilt per scan position) with a smoothness penalty."""

    name: str = "app_map"
    tilt_map: bool = True
    tilt_smoothness: float = 0.01


@dataclass
class MixedObjectConfig(FPPConfig):
    """Mixed-object ptychography: ``object_states`` states from distinct random starts, full
    batch (paper 003: mini-batches break the states apart)."""

    name: str = "mixed_object"
    object_states: int = 4
    state_noise: float = 20.0
    post_align: bool = False


def check(cfg: FPPConfig) -> None:
    """Parameter combinations, refused by name before compute."""
    for key in ("iterations", "n_slices", "probe_modes", "object_states"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), "an integer >= 1")
    if cfg.loss not in ("amplitude", "poisson"):
        raise ConfigError("algorithm.loss", cfg.loss, "amplitude or poisson")
    if cfg.object_optimizer not in OBJECT_OPTIMIZERS:
        raise ConfigError("algorithm.object_optimizer", cfg.object_optimizer,
                          f"one of {OBJECT_OPTIMIZERS}")
    if cfg.regularizer not in REGULARIZERS:
        raise ConfigError("algorithm.regularizer", cfg.regularizer, f"one of {REGULARIZERS}")
    for key in ("object_lr", "probe_lr", "positions_lr", "tilt_lr", "thickness_lr",
                "state_noise", "tilt_smoothness"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), ">= 0 (0 = fixed)")
    if cfg.thickness is not None and cfg.thickness <= 0:
        raise ConfigError("algorithm.thickness", cfg.thickness, "null (the cell) or > 0 Å")
    if len(cfg.initial_tilt) != 2:
        raise ConfigError("algorithm.initial_tilt", cfg.initial_tilt, "[θx, θy] in mrad")
    for key in ("batch_size", "chunk_size"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise ConfigError(f"algorithm.{key}", getattr(cfg, key), "null or >= 1")
    if cfg.object_states > 1 and cfg.state_noise == 0:
        raise ConfigError("algorithm.state_noise", 0.0,
                          "> 0 V Å with object_states > 1: identical starts stay identical")
    p = cfg.state_perturbation
    if cfg.state_split < 0 or (cfg.state_split > 0 and p is None):
        raise ConfigError("algorithm.state_split", cfg.state_split,
                          ">= 0, and > 0 only with a state_perturbation")
    if p is not None and not (p > 0 if cfg.object_states > 1 else p >= 0):
        raise ConfigError("algorithm.state_perturbation", p,
                          "null (independent starts) or > 0 (a fraction of state_noise; with "
                          "object_states > 1, 0 would leave the states identical)")


def build_model(data: TomoData, cfg: FPPConfig, tilt: int = 0,
                generator: torch.Generator | None = None) -> MultislicePtychography:
    """The model of projection ``tilt`` of ``data`` (object on the cell's lateral grid)."""
    nz, nx, ny = data.volume_shape
    v, positions = data.voxel_size, data.positions[tilt]
    k = positions.shape[0]
    theta = torch.tensor(cfg.initial_tilt, dtype=data.euler.dtype, device=data.device) * MRAD
    propagator = build_propagator(
        data, cfg.n_slices, thickness=cfg.thickness, centred=True,
        tilt=theta.expand(k, 2).clone() if cfg.tilt_map else theta,
        per_position_thickness=k if cfg.thickness_map else None)
    start = initial_states(cfg, (nx, ny), generator)
    obj = SlicedObject(start.to(data.device), data.energy, (v, v), antialias=False)
    probe = build_probe(data, cfg.probe_modes, learn_occupations=cfg.probe_modes > 1)
    return MultislicePtychography(obj, probe, positions, propagator,
                                  tuple(data.patterns.shape[-2:]), tilt_pivot="centre")


def initial_states(cfg: FPPConfig, shape: tuple[int, int],
                   generator: torch.Generator | None = None) -> Tensor:
    """The starting object ``[K, S, *shape]`` (V Å): uniform random in [0, ``state_noise``),
    independent per state, or (``state_perturbation = p``) one common start plus a per-state
    uniform perturbation in [0, ``p x state_noise``). States that start equal get equal
    updates, so some difference is needed; a small one leaves the split to the data: the
    common state is a saddle of the incoherent loss only where the data need more than one
    object (thermal motion), so static data keep the states together."""
    full = (cfg.object_states, cfg.n_slices, *shape)
    if cfg.state_perturbation is None:
        return torch.rand(full, generator=generator) * cfg.state_noise
    common = torch.rand((1, *full[1:]), generator=generator) * cfg.state_noise
    if cfg.state_split > 0:
        return common.expand(full).clone()
    return common + perturbation(cfg, full, generator)


def perturbation(cfg: FPPConfig, shape: tuple[int, ...],
                 generator: torch.Generator | None = None) -> Tensor:
    """Uniform random ``[0, state_perturbation x state_noise)`` V Å of ``shape``."""
    return torch.rand(shape, generator=generator) * (cfg.state_noise * cfg.state_perturbation)


def _settings(cfg: FPPConfig) -> dict[str, GroupSettings]:
    groups = {"object": "object", "probe": "probe", "positions": "positions", "tilt": "tilt",
              "slice_thickness": "thickness"}
    out = {group: GroupSettings(lr=getattr(cfg, f"{key}_lr"),
                                start_iter=getattr(cfg, f"{key}_start"))
           for group, key in groups.items() if getattr(cfg, f"{key}_lr") > 0}
    if "object" in out:
        out["object"].optimizer = cfg.object_optimizer
    return out


def _constraints(cfg: FPPConfig, dz: float, sampling: tuple[float, float],
                 misfit: Callable[[MultislicePtychography], float], seed: int = 0) -> list:
    out = [nonnegative("object.potential")] if cfg.positivity else []
    generator = torch.Generator().manual_seed(seed + 1)

    def split(model: MultislicePtychography, iteration: int) -> None:
        if iteration == cfg.state_split - 1:
            pot = model.object.potential
            pot.add_(perturbation(cfg, tuple(pot.shape), generator).to(pot))

    def regularize(model: MultislicePtychography, iteration: int) -> None:
        pot = model.object.potential
        if cfg.regularizer == "kz":
            pot.lerp_(kz_filter(pot, sampling, dz, cfg.kz_beta), cfg.kz_strength)
        elif cfg.regularizer == "butterworth":
            pot.copy_(butterworth_z(pot, cfg.butterworth_cutoff, cfg.butterworth_order))

    def orthogonalize(model: MultislicePtychography, iteration: int) -> None:
        if cfg.probe_lr > 0 and iteration >= cfg.probe_start:
            model.probe.orthogonalize_()

    last: list[float] = []  # the misfit before the previous regauge

    def regauge(model: MultislicePtychography, iteration: int) -> None:
        every = cfg.tilt_from_slices
        if iteration >= cfg.tilt_start and (iteration - cfg.tilt_start) % every == every - 1:
            before = misfit(model)
            gained = last[-1] - before if last else None
            checked_regauge(model, cfg.post_align_max_shift, misfit, gained=gained,
                            before=before)
            last.append(before)

    out += [regularize] if cfg.regularizer != "none" else []
    out += [split] if cfg.state_split > 0 and cfg.object_states > 1 else []
    out += [regauge] if cfg.tilt_from_slices and cfg.tilt_lr > 0 and cfg.n_slices > 1 else []
    return out + ([orthogonalize] if cfg.orthogonalize_probe and cfg.probe_modes > 1 else [])


def _loss(data: TomoData, cfg: FPPConfig, tilt: int, grid: tuple[int, int], scale: float,
          chunks: tuple[Tensor, ...]):
    """The batch loss: the data loss, plus for a tilt map ``tilt_smoothness x scale`` per mrad²
    of mean squared neighbour difference (``scale``: the starting data loss, so that the
    weight does not depend on the dose or the detector); and the data misfit (the data loss
    over every position, in ``chunks`` of indices) as a float, without gradients."""
    fn, measured = LOSSES[cfg.loss], data.patterns[tilt]
    weight = cfg.tilt_smoothness * scale / MRAD**2
    n_pos = measured.shape[0]

    def penalty(model: MultislicePtychography) -> Tensor | float:
        if cfg.tilt_map and weight > 0:
            return weight * tilt_smoothness(model.propagator.tilt.reshape(*grid, 2))
        return 0.0

    def loss(model: MultislicePtychography, indices: Tensor) -> Tensor:
        return fn(model(indices), measured[indices]) + penalty(model)

    @torch.no_grad()
    def misfit(model: MultislicePtychography) -> float:
        return sum(float(fn(model(c), measured[c], reduction="sum")) for c in chunks) / n_pos

    return loss, misfit


def _estimates(cfg: FPPConfig, data: TomoData, grid: tuple[int, int]):
    v = data.voxel_size

    def estimates(model: MultislicePtychography) -> dict:
        states = model.object.potential.detach()
        prop, n = model.propagator, cfg.n_slices
        theta = prop.tilt.detach() / MRAD
        if cfg.post_align and n > 1:
            limit = cfg.post_align_max_shift / v
            aligned = [align_slices(s, max_shift=limit) for s in states]
            states = torch.stack([a for a, _ in aligned])
            # the tilt that FPP's post-alignment implies: the slope of the slice shifts along z
            depth = torch.cumsum(prop.thickness(n).detach().reshape(-1, n).mean(0), 0)
            slope = _slope(depth, aligned[0][1].to(depth) * v)
            theta = theta + torch.atan(slope) / MRAD
        out = {"object_states": states, "object_sampling": (v, v), "probe": model.probe(),
               "tilt": theta.mean(0) if prop.per_position_tilt else theta,
               "slice_thickness": prop.thickness(n).detach().mean(0) if
               prop.per_position_thickness else prop.thickness(n).detach(),
               "positions": (model.positions + model.position_offset).detach()[None]}
        if prop.per_position_tilt:
            out["tilt_map"] = theta.reshape(*grid, 2)
        if prop.per_position_thickness:
            out["thickness_map"] = prop.thickness(n).detach().sum(-1).reshape(grid)
        return out

    return estimates


@torch.no_grad()
def checked_regauge(model: MultislicePtychography, max_shift: float,
                    misfit: Callable[[MultislicePtychography], float],
                    tolerance: float = 0.01, tries: int = 3,
                    gained: float | None = None, give_back: float = 0.5,
                    before: float | None = None) -> float:
    """:func:`regauge_tilt`, kept only if it is the gauge change it should be: the data
    ``misfit`` may grow by at most ``tolerance`` (relative). Where the slices' shear is not
    uniform over a probe's footprint (a grain boundary, a crystal's edge) the first-order warp
    does change the patterns; then the step is halved, up to ``tries`` times, and then undone.
    (The tilt map's penalty is left out of the check on purpose: the regauge is a proposal
    that may roughen the map, which the following gradient steps smooth; checking the whole
    objective undid most regauges and left the graded slab's map at 3.8 mrad RMS, against
    0.5 with this check.) ``gained``: how much the misfit fell since the previous regauge; a
    step may then give back at most ``give_back`` of it, so that regauges cannot ratchet a
    tilt up step by step, each within the tolerance (on the ci Cu pair, with particles too
    thin to shear measurably, they drove the map to +-85 mrad against a true +28/-14 and the
    smoothness penalty past the divergence limit). ``before``: the current misfit, where the
    caller has it already (it is computed otherwise). Returns the fraction of the step kept
    (0 = undone)."""
    obj, prop = model.object, model.propagator
    potential, tilt = obj.potential.detach().clone(), prop.tilt.detach().clone()
    before = misfit(model) if before is None else before
    allowed = before * tolerance
    if gained is not None:
        allowed = min(allowed, give_back * max(gained, 0.0))
    for attempt in range(tries + 1):
        fraction = 0.5**attempt
        regauge_tilt(model, max_shift, fraction=fraction)
        if misfit(model) <= before + allowed:
            return fraction
        obj.potential.copy_(potential)
        prop.tilt.copy_(tilt)
    return 0.0


@torch.no_grad()
def regauge_tilt(model: MultislicePtychography, max_shift: float, window: float = 6.0,
                 fraction: float = 1.0) -> Tensor:
    """Move the tilt implied by the slices' relative shifts into the propagator.

    The multislice model is unchanged, to first order in the slice thickness, by adding δ to
    the tilt and shifting slice ``s`` by ``-(z_s - z_c) tan δ`` (``z_c`` the slab's middle,
    where positions pivot): a tilt and sheared slices are one degree of freedom, which the
    gradient alone leaves mostly in the slices. This finds ``tan δ`` as the slope of the
    cross-correlation shifts of the (state-averaged) slices along z, within ``max_shift`` Å,
    and applies ``fraction`` of it; it returns the δ applied (rad): ``[2]``, or ``[K, 2]``
    for a tilt map, whose slopes are measured in a ``window`` Å square around each scan
    position and whose slices are shifted by the interpolated (nearest scan position) field.
    Applied once per ``tilt_from_slices`` iterations."""
    obj, prop = model.object, model.propagator
    n, v = obj.potential.shape[1], model.sampling[0]
    dz = prop.thickness(n).reshape(-1, n).mean(0)
    depth = torch.cumsum(dz, 0) - dz[0]
    depth = depth - prop.pivot(n).mean()
    mean = obj.potential.mean(0)
    if prop.per_position_tilt:
        centres = (model.positions + model.position_offset) / v
        size = max(int(round(window / v)) | 1, 5)
        shifts = local_slice_shifts(mean, centres, size, max_shift / v).to(depth) * v
        slope = _slope(depth, shifts)  # [K, 2]
        # trust only windows with structure (not vacuum, which may be most of the field), and
        # move the outer slices by at most half a pixel per regauge (the first-order warp's
        # range); repeats accumulate
        signal = window_signal(mean[n // 2], centres, size).to(depth)
        slope = torch.where((signal > 0.2 * signal.quantile(0.9))[:, None], slope, 0.0)
        limit = 0.5 * v / float(depth.abs().max().clamp_min(v))
        slope = slope.clamp(-limit, limit) * fraction
        field = _nearest_field(slope, centres, tuple(mean.shape[-2:]))  # [2, N1, N2]
        for s in range(n):
            obj.potential[:, s] = shift_field(obj.potential[:, s], -field * depth[s] / v)
    else:
        shifts = slice_shifts(mean, max_shift=max_shift / v).to(depth) * v
        slope = _slope(depth, shifts) * fraction
        px = (depth[:, None] * slope[None]) / v  # [S, 2] pixels
        for s in range(n):
            moved = fourier_shift(obj.potential[:, s], -px[s][None].to(obj.potential))[0].real
            obj.potential[:, s] = moved
    delta = torch.atan(slope)
    prop.tilt.add_(delta.to(prop.tilt))
    return delta


def _nearest_field(values: Tensor, centres: Tensor, shape: tuple[int, int]) -> Tensor:
    """``values [K, 2]`` at scan ``centres [K, 2]`` (pixels) spread over an ``shape`` grid
    ``[2, N1, N2]``, each pixel taking its nearest scan position (periodic distances)."""
    i = torch.arange(shape[0], dtype=centres.dtype, device=centres.device)
    j = torch.arange(shape[1], dtype=centres.dtype, device=centres.device)
    di = (i[:, None] - centres[None, :, 0] + shape[0] / 2) % shape[0] - shape[0] / 2
    dj = (j[:, None] - centres[None, :, 1] + shape[1] / 2) % shape[1] - shape[1] / 2
    dist = di[:, None, :] ** 2 + dj[None, :, :] ** 2  # [N1, N2, K]
    return values[dist.argmin(-1)].permute(2, 0, 1)


def _slope(depth: Tensor, shifts: Tensor) -> Tensor:
    """Least-squares slope ``[..., 2]`` of ``shifts [..., S, 2]`` (Å) against ``depth [S]``."""
    d = depth - depth.mean()
    centred = shifts - shifts.mean(-2, keepdim=True)
    return (d[:, None] * centred).sum(-2) / (d**2).sum()


def choose_projection(data: TomoData, projection: int | None) -> int:
    """The tilt index to reconstruct: ``projection``, or the tilt nearest 0° (all Euler
    angles smallest)."""
    if projection is None:
        return int(torch.argmin(data.euler.abs().sum(-1)))
    if not 0 <= projection < data.n_tilts:
        raise ConfigError("algorithm.projection", projection,
                          f"null or a tilt index in [0, {data.n_tilts})")
    return projection


def run(data: TomoData, cfg: FPPConfig, seed: int, progress: bool) -> Reconstruction:
    """Reconstruct one projection of ``data`` through the shared fit layer."""
    tilt = choose_projection(data, cfg.projection)
    grid = raster_shape(data.positions[tilt]) if cfg.tilt_map or cfg.thickness_map else (0, 0)
    model = build_model(data, cfg, tilt, generator=torch.Generator().manual_seed(seed))
    dz = float(model.propagator.thickness(cfg.n_slices).detach().mean())
    n_pos = data.patterns.shape[1]
    with torch.no_grad():
        every = torch.arange(min(n_pos, 1024), device=data.device)
        scale = float(LOSSES[cfg.loss](model(every), data.patterns[tilt, every]))
    chunks = torch.arange(n_pos, device=data.device).split(cfg.chunk_size or 256)
    loss, misfit = _loss(data, cfg, tilt, grid, scale, chunks)
    problem = Problem(
        model, loss,
        index_batches(n_pos, cfg.batch_size, device=data.device),
        _settings(cfg), _estimates(cfg, data, grid),
        constraints=_constraints(cfg, dz, (data.voxel_size,) * 2, misfit, seed),
        residual=lambda m: ((data.patterns[tilt, c], m(c)) for c in chunks),
        info={"projection": tilt, "n_slices": cfg.n_slices, "object_states": cfg.object_states,
              "probe_modes": cfg.probe_modes})
    return fit(problem, cfg.iterations, seed, progress, cfg.divergence_factor, cfg.chunk_size)


for _name, _schema in (("fpp", FPPConfig), ("app", APPConfig), ("app_map", APPMapConfig),
                       ("mixed_object", MixedObjectConfig)):
    register_variant(Variant(_name, _schema, {"diffraction"}, run, check))

__all__ = ["FPPConfig", "APPConfig", "APPMapConfig", "MixedObjectConfig", "build_model",
           "initial_states", "run"]
