"""MSET and SSET (paper 001): a real, non-negative 3D potential from a 4D-STEM tilt series.

Per tilt: rotate the volume (shared :class:`TiltSeriesGeometry`), bin it into slices of
``slice_thickness``, multislice with the known probe (shared :func:`multislice_forward`), compare
far-field amplitudes, project onto V >= 0 after each update. SSET is the same with a single
slice spanning the specimen (the paper's own definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reconstruct.data import TomoData
from reconstruct.fit import Problem, build_geometry, build_probe, build_propagator, fit, nonnegative
from reconstruct.loop import GroupSettings
from reconstruct.losses import LOSSES
from reconstruct.multislice import MultislicePtychography
from reconstruct.optics import MixedProbe, energy2sigma
from reconstruct.propagation import transmission
from reconstruct.result import Reconstruction
from reconstruct.tomography import bin_slices
from reconstruct.variants.base import Variant, register_variant
from simulate.errors import ConfigError

OPTIMIZERS = ("line_search", "adam", "sgd")
UPDATES = ("per_tilt", "accumulated")


@dataclass
class MSETConfig:
    """MSET parameters. ``slice_thickness`` in Å (a multiple of the voxel; None = one voxel,
    the paper's 0.4 Å); ``optimizer`` ``line_search`` (the paper's backtracking, initial step
    ``lr`` in the paper's units, where the gradient has 2σΔz set to unity, factor ``rho``),
    ``sgd`` (same units) or ``adam`` (``lr`` in V per update); ``batch_size`` scan
    positions per update (None = a whole tilt); ``update`` ``per_tilt`` (one update per batch
    of one tilt) or ``accumulated`` (one update from the gradient summed over all tilts);
    ``chunk_size`` evaluates each per-tilt batch in chunks of that many positions with
    accumulated gradients (the same updates; bounds the memory, and faster on a CPU); a
    run whose mean loss grows past ``divergence_factor`` x its starting loss is stopped as
    diverged."""

    name: str = "mset"
    iterations: int = 10
    slice_thickness: float | None = None
    optimizer: str = "line_search"
    lr: float = 100.0
    rho: float = 0.1
    batch_size: int | None = None
    chunk_size: int | None = None
    update: str = "per_tilt"
    loss: str = "amplitude"
    positivity: bool = True
    refine_probe: bool = False
    probe_lr: float = 1e-3
    probe_start: int = 1
    divergence_factor: float = 10.0


@dataclass
class SSETConfig(MSETConfig):
    """SSET: MSET with one slice through the whole specimen; ``slice_thickness`` must stay
    unset."""

    name: str = "sset"


class MultisliceTomography(nn.Module):
    """The MSET forward model: the volume ``[Z, X, Y]`` (V, group ``object``), rotated per tilt
    (shared :class:`TiltSeriesGeometry`: groups ``angles``, ``shifts``), binned into
    ``n_slices`` slices and passed as the transmission of the shared
    :class:`MultislicePtychography` (probe, propagator, scan positions of every tilt, flattened
    to ``[T P, 2]``; its window is the whole cell). ``forward(tilt, indices [B])`` returns model
    patterns ``[B, n, n]`` per incident electron (k = 0 at ``n // 2``)."""

    def __init__(self, data: TomoData, n_slices: int, n_pattern: int | tuple[int, int],
                 probes: Tensor | None = None, positions: Tensor | None = None) -> None:
        super().__init__()
        n_pattern = (n_pattern,) * 2 if isinstance(n_pattern, int) else tuple(n_pattern)
        v = data.voxel_size
        self.volume = nn.Parameter(torch.zeros(data.volume_shape, device=data.device))
        self.geometry = build_geometry(data)
        propagator = build_propagator(data, n_slices)
        positions = data.positions if positions is None else positions
        if probes is None:  # one probe for every tilt
            self.ptycho = MultislicePtychography(
                None, build_probe(data), positions.reshape(-1, 2), propagator, n_pattern,
                sampling=(v, v))
            self.per_tilt = None
        else:  # the probe modes [T, modes, M1, M2] and positions of each tilt its own
            self.per_tilt = nn.ModuleList(
                MultislicePtychography(None, MixedProbe(p, n_modes=p.shape[0]), pos,
                                       propagator, n_pattern, sampling=(v, v))
                for p, pos in zip(probes, positions, strict=True))
        self.sigma, self.voxel, self.n_slices = energy2sigma(data.energy), v, n_slices
        self.n_positions = int(data.positions.shape[1])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        parts = [self.ptycho] if self.per_tilt is None else list(self.per_tilt)
        groups: dict[str, list[nn.Parameter]] = {}
        for part in parts:
            for name, params in part.parameter_groups().items():
                known = {id(q) for q in groups.setdefault(name, [])}
                groups[name] += [q for q in params if id(q) not in known]
        groups.pop("object", None)
        return groups | {"object": [self.volume], "angles": [self.geometry.angles],
                         "shifts": [self.geometry.shifts]}

    def probe(self, tilt: int = 0) -> Tensor:
        """The probe modes ``[modes, M1, M2]`` of ``tilt``."""
        return (self.ptycho if self.per_tilt is None else self.per_tilt[tilt]).probe()

    def scan_positions(self) -> Tensor:
        """Scan positions ``[T, P, 2]`` Å (with their offsets)."""
        if self.per_tilt is None:
            return (self.ptycho.positions + self.ptycho.position_offset).reshape(
                -1, self.n_positions, 2)
        return torch.stack([m.positions + m.position_offset for m in self.per_tilt])

    def forward(self, tilt: int, indices: Tensor) -> Tensor:
        index = torch.tensor([tilt], device=self.volume.device)
        rotated = self.geometry(self.volume, index)[0]  # [Z, X, Y] V
        slices = bin_slices(rotated, self.n_slices, self.voxel)  # [S, X, Y] V Å
        trans = transmission(slices, self.sigma)[None]  # [1, S, X, Y]
        if self.per_tilt is not None:
            return self.per_tilt[tilt](indices, trans)
        return self.ptycho(tilt * self.n_positions + indices, trans)


def _batches(data: TomoData, cfg: MSETConfig):
    n_pos = data.patterns.shape[1]
    size = cfg.batch_size or n_pos

    def make(gen: torch.Generator) -> list:
        if cfg.update == "accumulated":  # one batch: a flat index over tilts x positions
            return [torch.arange(data.n_tilts * n_pos, device=data.device)]
        out = []
        for t in torch.randperm(data.n_tilts, generator=gen).tolist():
            order = torch.randperm(n_pos, generator=gen)
            out += [(t, chunk.to(data.device)) for chunk in torch.split(order, size)]
        return out

    return make


def _items(data: TomoData, batch) -> list[tuple[int, Tensor]]:
    """(tilt, position indices) of a batch: ``(t, indices)`` itself; a flat index ``[B]`` into
    tilts x positions (``update=accumulated``; its chunks and ranks' shares may span tilts)
    grouped by tilt; None is every position of every tilt."""
    n_pos = data.patterns.shape[1]
    if batch is None:
        every = torch.arange(n_pos, device=data.device)
        return [(t, every) for t in range(data.n_tilts)]
    if isinstance(batch, Tensor):
        tilts = torch.div(batch, n_pos, rounding_mode="floor")
        return [(t, batch[tilts == t] % n_pos) for t in torch.unique(tilts).tolist()]
    return [batch]


def _loss(data: TomoData, cfg: MSETConfig):
    fn = LOSSES[cfg.loss]

    def loss(model: MultisliceTomography, batch) -> Tensor:
        """The mean loss over the batch's patterns (each tilt's share weighted by its size)."""
        items = _items(data, batch)
        total = sum(int(idx.numel()) for _, idx in items)
        return sum(fn(model(t, idx), data.patterns[t, idx]) * (idx.numel() / total)
                   for t, idx in items)

    return loss


def _residual(data: TomoData, chunk: int):
    def pairs(model: MultisliceTomography):
        for t, idx in _items(data, None):
            for c in torch.split(idx, chunk):
                yield data.patterns[t, c], model(t, c)

    return pairs


def check(cfg: MSETConfig) -> None:
    """Parameter combinations, refused by name before compute."""
    if cfg.name == "sset" and cfg.slice_thickness is not None:
        raise ConfigError("algorithm.slice_thickness", cfg.slice_thickness,
                          "unset (null) for sset: one slice spans the specimen")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError("algorithm.optimizer", cfg.optimizer, f"one of {OPTIMIZERS}")
    if cfg.update not in UPDATES:
        raise ConfigError("algorithm.update", cfg.update, f"one of {UPDATES}")
    if cfg.loss not in LOSSES:
        raise ConfigError("algorithm.loss", cfg.loss, f"one of {sorted(LOSSES)}")
    if cfg.chunk_size is not None and cfg.chunk_size < 1:
        raise ConfigError("algorithm.chunk_size", cfg.chunk_size, "null or >= 1")
    if cfg.iterations < 1 or cfg.lr <= 0:
        raise ConfigError("algorithm.iterations/lr", (cfg.iterations, cfg.lr),
                                 "iterations >= 1 and lr > 0")


def n_slices_for(cfg: MSETConfig, data: TomoData) -> int:
    """Number of slices: 1 for SSET, else cell thickness / ``slice_thickness``."""
    nz = data.volume_shape[0]
    if cfg.name == "sset":
        return 1
    dz = cfg.slice_thickness or data.voxel_size
    ratio = dz / data.voxel_size
    if abs(ratio - round(ratio)) > 1e-6 or nz % round(ratio):
        raise ConfigError("algorithm.slice_thickness", dz,
                                 f"a multiple of the voxel ({data.voxel_size} Å) dividing "
                                 f"the cell ({nz} voxels)")
    return nz // round(ratio)


def problem(data: TomoData, cfg: MSETConfig, model: MultisliceTomography) -> Problem:
    """MSET's fit problem on ``model``: the object group and the loss, batches, residual and
    estimates (other variants add groups and constraints)."""
    # The paper's step sizes refer to the gradient of one pattern with 2 sigma dz set to unity
    # (its eq. B5); our loss is the mean over a batch of patterns (and over tilts).
    per_update = (cfg.batch_size or data.patterns.shape[1]) * (
        data.n_tilts if cfg.update == "accumulated" else 1)
    lr = (cfg.lr if cfg.optimizer == "adam"
          else cfg.lr * per_update / (2 * model.sigma * data.voxel_size))
    options = {"rho": cfg.rho} if cfg.optimizer == "line_search" else {}
    settings = {"object": GroupSettings(lr=lr, optimizer=cfg.optimizer, options=options)}
    if cfg.refine_probe:
        settings["probe"] = GroupSettings(lr=cfg.probe_lr, start_iter=cfg.probe_start)
    return Problem(model, _loss(data, cfg), _batches(data, cfg), settings,
                   estimates=lambda m: {"volume": m.volume} | (
                       {"probe": m.probe()} if cfg.refine_probe else {}),
                   constraints=[nonnegative("volume")] if cfg.positivity else [],
                   residual=_residual(data, cfg.chunk_size or data.patterns.shape[1]),
                   info={"n_slices": model.n_slices})


def run(data: TomoData, cfg: MSETConfig, seed: int, progress: bool) -> Reconstruction:
    """Reconstruct with MSET/SSET through the shared fit layer."""
    model = MultisliceTomography(data, n_slices_for(cfg, data), data.patterns.shape[-2:])
    return fit(problem(data, cfg, model), cfg.iterations, seed, progress,
               cfg.divergence_factor, cfg.chunk_size)


register_variant(Variant("mset", MSETConfig, {"diffraction"}, run, check))
register_variant(Variant("sset", SSETConfig, {"diffraction"}, run, check))
