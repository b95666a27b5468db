"""End-to-end ptychographic tomography (paper 000, Algorithm 3), with the pose refined.

The chain: stage (a) tcBF defocus → stage (b) per-tilt ``fpp`` and JointLinearTomography
(:mod:`reconstruct.variants.sequential`) → stage (c): the volume fitted directly to every
tilt's diffraction patterns through the shared MSET forward model
(:class:`MultisliceTomography`: rotation and translation of the volume, binning along the beam
into slices, multislice with each tilt's own mixed-state probe at its own scan positions, the
incoherent sum over modes, the amplitude loss). Each stage's outputs start the next: the
probes and refined positions of ``fpp``, the angles, shifts and volume of the joint fit.

Beyond the paper (whose Euler angles, shifts and positions stay fixed in stage c): the groups
``angles``, ``shifts`` and ``positions`` are refined in the end-to-end loop, each with its own
rate and start iteration (``*_lr = 0`` holds it, the paper's setting). Regularisation as in
the paper's ablation: an isotropic Butterworth low-pass of the volume after every update
(``butterworth_cutoff`` 1/Å, ``butterworth_order``; 0 = off) and positivity from iteration
``positivity_start`` (delayed; a projection onto V >= 0, where the paper adds an L1 penalty
on the negative part from its 150th iteration).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from reconstruct.data import TomoData
from reconstruct.fit import fit
from reconstruct.loop import GroupSettings
from reconstruct.regularize import butterworth_3d
from reconstruct.result import Reconstruction
from reconstruct.variants import mset, ptycho
from reconstruct.variants.base import Variant, register_variant
from reconstruct.variants.mset import MSETConfig, MultisliceTomography
from reconstruct.variants.sequential import (
    SequentialConfig,
    check_sequential,
    geometry_estimate,
    sequential_stage,
)
from simulate.errors import ConfigError

INIT_VOLUMES = ("linear", "zero")


@dataclass
class E2EConfig(SequentialConfig, MSETConfig):
    """Stages (a) and (b) as :class:`SequentialConfig`; stage (c) as :class:`MSETConfig`
    (``iterations``, ``slice_thickness``, the object's ``optimizer``/``lr``, batches, loss),
    plus the rates (Adam, the group's units per step: Å for ``positions`` and ``shifts``, rad
    for ``angles``) and start iterations of the pose groups, the probe's (``refine_probe``;
    its modes are normalised to ``sum |psi|² = 1 / (M1 M2)``, so ``probe_lr`` 1e-6 moves a
    pixel by about 0.05% of the peak), the regularisers, and ``init_volume`` (``linear``:
    stage b's volume; ``zero``: the paper's V = 0)."""

    name: str = "e2e"
    iterations: int = 15
    batch_size: int | None = 144
    refine_probe: bool = False
    probe_lr: float = 1e-6
    probe_start: int = 2
    positions_lr: float = 0.0
    positions_start: int = 5
    angles_lr: float = 1e-4
    angles_start: int = 5
    shifts_lr: float = 0.01
    shifts_start: int = 2
    butterworth_cutoff: float = 0.0
    butterworth_order: int = 2
    positivity_start: int = 0
    init_volume: str = "linear"


def _constraints(cfg: E2EConfig, voxel: float) -> list:
    def regularise(model: MultisliceTomography, iteration: int) -> None:
        if cfg.butterworth_cutoff > 0:
            model.volume.copy_(butterworth_3d(model.volume, (voxel,) * 3,
                                              cfg.butterworth_cutoff, cfg.butterworth_order))
        if cfg.positivity and iteration >= cfg.positivity_start:
            model.volume.clamp_(min=0.0)

    return [regularise]


def _settings(cfg: E2EConfig, base: dict[str, GroupSettings]) -> dict[str, GroupSettings]:
    pose = {group: GroupSettings(lr=getattr(cfg, f"{group}_lr"),
                                 start_iter=getattr(cfg, f"{group}_start"))
            for group in ("positions", "angles", "shifts") if getattr(cfg, f"{group}_lr") > 0}
    return dict(base) | pose


def run_e2e(data: TomoData, cfg: E2EConfig, seed: int, progress: bool) -> Reconstruction:
    """Stages (a)-(c); returns the volume, the refined geometry, positions and probe."""
    n_slices = mset.n_slices_for(cfg, data)
    first = sequential_stage(data, cfg, seed, progress)
    dev = data.device
    model = MultisliceTomography(data, n_slices, data.patterns.shape[-2:],
                                 probes=first.probes.to(dev), positions=first.positions.to(dev))
    with torch.no_grad():
        model.geometry.angles.copy_(first.euler)
        model.geometry.shifts.copy_(first.shifts)
        if cfg.init_volume == "linear":
            model.volume.copy_(first.volume)
    base = mset.problem(data, cfg, model)
    zero = ptycho.choose_projection(data, None)
    problem = dataclasses.replace(
        base, settings=_settings(cfg, base.settings),
        constraints=_constraints(cfg, data.voxel_size),
        estimates=lambda m: {"volume": m.volume, "probe": m.probe(zero),
                             "positions": m.scan_positions(),
                             "geometry": geometry_estimate(m.geometry.angles,
                                                           m.geometry.shifts)},
        info={**base.info, **first.info})
    return fit(problem, cfg.iterations, seed, progress, cfg.divergence_factor, cfg.chunk_size)


def check_e2e(cfg: E2EConfig) -> None:
    """Parameter combinations, refused by name before compute."""
    check_sequential(cfg)
    mset.check(cfg)
    if cfg.init_volume not in INIT_VOLUMES:
        raise ConfigError("algorithm.init_volume", cfg.init_volume, f"one of {INIT_VOLUMES}")
    for group in ("positions", "angles", "shifts", "probe"):
        if getattr(cfg, f"{group}_lr") < 0 or getattr(cfg, f"{group}_start") < 0:
            raise ConfigError(f"algorithm.{group}_lr/{group}_start",
                              (getattr(cfg, f"{group}_lr"), getattr(cfg, f"{group}_start")),
                              "lr >= 0 (0 = held) and start >= 0")
    if cfg.butterworth_cutoff < 0:
        raise ConfigError("algorithm.butterworth_cutoff", cfg.butterworth_cutoff,
                          ">= 0 1/Å (0 = off)")
    if cfg.butterworth_order < 1:
        raise ConfigError("algorithm.butterworth_order", cfg.butterworth_order, "an integer >= 1")


register_variant(Variant("e2e", E2EConfig, {"diffraction"}, run_e2e, check_e2e))
