"""MSET and SSET (paper 001): a real, non-negative 3D potential from a 4D-STEM tilt series.

Per tilt: rotate the volume (shared :class:`TiltSeriesGeometry`), bin it into slices of
``slice_thickness``, multislice with the known probe (shared :func:`multislice_forward`), compare
far-field amplitudes, project onto V >= 0 after each update. SSET is the same with a single
slice spanning the specimen (the paper's own definition).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reconstruct.loop import GroupSettings, optimize
from reconstruct.losses import LOSSES
from reconstruct.multislice import crop_center, farfield_intensity, multislice_forward
from reconstruct.optics import MixedProbe, energy2sigma, probe_from_aberrations
from reconstruct.propagation import Propagator, transmission
from reconstruct.scanning import fourier_shift
from reconstruct.tomography import TiltSeriesGeometry, bin_slices
from reconstruct.variants.base import (
    Reconstruction,
    TomoData,
    Variant,
    VariantConfigError,
    register_variant,
)

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
    """The MSET forward model on the cell grid: ``forward(tilt, indices)`` returns model
    patterns ``[B, n, n]`` (per incident electron, k = 0 at ``n // 2``)."""

    def __init__(self, data: TomoData, n_slices: int, n_pattern: int) -> None:
        super().__init__()
        nz, nx, ny = data.volume_shape
        v, dev = data.voxel_size, data.device
        self.volume = nn.Parameter(torch.zeros(data.volume_shape, device=dev))
        self.geometry = TiltSeriesGeometry(data.euler, data.shifts, voxel=(v, v, v),
                                           centre=cell_centre(data.volume_shape))
        probe = probe_from_aberrations((nx, ny), (v, v), data.energy, data.semiangle,
                                       data.aberrations, centered=False, device=dev)
        self.probe = MixedProbe(probe, n_modes=1, learn_occupations=False)
        self.propagator = Propagator((nx, ny), (v, v), data.energy, nz * v / n_slices,
                                     antialias=False, device=dev)
        self.register_buffer("shifts_px", data.positions / v)
        self.sigma, self.voxel, self.n_slices, self.n_pattern = (
            energy2sigma(data.energy), v, n_slices, n_pattern)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"object": [self.volume], "probe": [self.probe.modes_real],
                "angles": [self.geometry.angles], "shifts": [self.geometry.shifts],
                "slice_thickness": [self.propagator.slice_thickness],
                "tilt": [self.propagator.tilt]}

    def forward(self, tilt: int, indices: Tensor) -> Tensor:
        index = torch.tensor([tilt], device=self.volume.device)
        rotated = self.geometry(self.volume, index)[0]  # [Z, X, Y] V
        slices = bin_slices(rotated, self.n_slices, self.voxel)  # [S, X, Y] V Å
        trans = transmission(slices, self.sigma)[:, None, None]  # [S, 1, 1, X, Y]
        probes = fourier_shift(self.probe(), self.shifts_px[tilt, indices])  # [B, P, X, Y]
        exit_waves = multislice_forward(probes, trans, self.propagator(self.n_slices))
        return crop_center(farfield_intensity(exit_waves), (self.n_pattern, self.n_pattern))


def cell_centre(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Rotation centre (index units, ``[z, x, y]``) of the cell: ``n v / 2`` on every axis with
    voxel ``[k, i, j]`` at ``(i v, j v, (k + 1/2) v)``."""
    nz, nx, ny = shape
    return ((nz - 1) / 2, nx / 2, ny / 2)


def _batches(data: TomoData, cfg: MSETConfig):
    n_pos = data.patterns.shape[1]
    size = cfg.batch_size or n_pos

    def make(gen: torch.Generator) -> list:
        if cfg.update == "accumulated":
            return [None]
        out = []
        for t in torch.randperm(data.n_tilts, generator=gen).tolist():
            order = torch.randperm(n_pos, generator=gen)
            out += [(t, chunk.to(data.device)) for chunk in torch.split(order, size)]
        return out

    return make


def _loss(data: TomoData, cfg: MSETConfig):
    fn = LOSSES[cfg.loss]
    every = [(t, torch.arange(data.patterns.shape[1], device=data.device))
             for t in range(data.n_tilts)]

    def loss(model: MultisliceTomography, batch) -> Tensor:
        items = every if batch is None else [batch]
        total = sum(fn(model(t, idx), data.patterns[t, idx], mask=data.pattern_mask)
                    for t, idx in items)
        return total / len(items)

    return loss


def check(cfg: MSETConfig) -> None:
    """Parameter combinations, refused by name before compute."""
    if cfg.name == "sset" and cfg.slice_thickness is not None:
        raise VariantConfigError("algorithm.slice_thickness", cfg.slice_thickness,
                                 "unset (null) for sset: one slice spans the specimen")
    if cfg.optimizer not in OPTIMIZERS:
        raise VariantConfigError("algorithm.optimizer", cfg.optimizer, f"one of {OPTIMIZERS}")
    if cfg.update not in UPDATES:
        raise VariantConfigError("algorithm.update", cfg.update, f"one of {UPDATES}")
    if cfg.loss not in LOSSES:
        raise VariantConfigError("algorithm.loss", cfg.loss, f"one of {sorted(LOSSES)}")
    if cfg.chunk_size is not None and cfg.chunk_size < 1:
        raise VariantConfigError("algorithm.chunk_size", cfg.chunk_size, "null or >= 1")
    if cfg.iterations < 1 or cfg.lr <= 0:
        raise VariantConfigError("algorithm.iterations/lr", (cfg.iterations, cfg.lr),
                                 "iterations >= 1 and lr > 0")


def n_slices_for(cfg: MSETConfig, data: TomoData) -> int:
    """Number of slices: 1 for SSET, else cell thickness / ``slice_thickness``."""
    nz = data.volume_shape[0]
    if cfg.name == "sset":
        return 1
    dz = cfg.slice_thickness or data.voxel_size
    ratio = dz / data.voxel_size
    if abs(ratio - round(ratio)) > 1e-6 or nz % round(ratio):
        raise VariantConfigError("algorithm.slice_thickness", dz,
                                 f"a multiple of the voxel ({data.voxel_size} Å) dividing "
                                 f"the cell ({nz} voxels)")
    return nz // round(ratio)


def run(data: TomoData, cfg: MSETConfig, seed: int, progress: bool) -> Reconstruction:
    """Reconstruct with MSET/SSET through the shared loop."""
    if data.patterns is None:
        raise VariantConfigError("detector.pixelated", False, f"true for {cfg.name}")
    model = MultisliceTomography(data, n_slices_for(cfg, data), data.patterns.shape[-1])
    # The paper's step sizes refer to the gradient of one pattern with 2 sigma dz set to unity
    # (its eq. B5); our loss is the mean over a batch of patterns (and over tilts).
    per_update = (cfg.batch_size or data.patterns.shape[1]) * (
        data.n_tilts if cfg.update == "accumulated" else 1)
    lr = (cfg.lr if cfg.optimizer == "adam"
          else cfg.lr * per_update / (2 * model.sigma * data.voxel_size))
    settings = {"object": GroupSettings(lr=lr, optimizer=cfg.optimizer,
                                        options={"rho": cfg.rho} if cfg.optimizer == "line_search"
                                        else {})}
    if cfg.refine_probe:
        settings["probe"] = GroupSettings(lr=cfg.probe_lr, start_iter=cfg.probe_start)
    positivity = [lambda m, it: m.volume.clamp_(min=0.0)] if cfg.positivity else []
    t0 = time.perf_counter()
    history = optimize(model, _loss(data, cfg), _batches(data, cfg), settings, cfg.iterations,
                       constraints=positivity, seed=seed, progress=progress,
                       divergence_factor=cfg.divergence_factor, chunk_size=cfg.chunk_size)
    elapsed = (time.perf_counter() - t0) / max(len(history.loss), 1)
    return Reconstruction(volume=model.volume.detach(), history=history,
                          seconds_per_iteration=elapsed,
                          info={"n_slices": model.n_slices, "final_loss": history.loss[-1]
                                if history.loss else math.nan})


register_variant(Variant("mset", MSETConfig, "diffraction", run, check))
register_variant(Variant("sset", SSETConfig, "diffraction", run, check))
