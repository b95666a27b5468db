"""Paper 003 diagnostic: the model floor against the thermal diffuse signal of a dataset pair.

Takes a static dataset (one MD snapshot, ``sample.static_snapshot=0``) and its thermal twin
(all snapshots, ``=-1``) from the cache, and evaluates our multislice forward model at the
*true* potentials on the reconstruction grid (the truth voxel), with the R-factor of
CONVENTIONS (``sum |I_obs - I_cal| / sum I_obs``):

- floor: R(F(V_0), static data), the misfit of the true potential on this grid (a fitted
  object can absorb part of it);
- thermal incoherent: R(F(mean_k V_k), mean_k F(V_k)), what the extra object states of the
  mixed-object model can explain beyond one object, in the model's own terms;
- R(mean_k F(V_k), thermal data): the floor of an exact incoherent sum of the true snapshots;
- R(static data, thermal data): how far apart the two datasets are.

If the thermal incoherent term is well below the floor, a mixed object fits the misfit rather
than the motion, on both datasets alike. Usage (keys from a run's ``metrics.json``)::

    PTYCHOBENCH_CACHE=DIR python benchmarks/diag_thermal_floor.py STATIC_KEY THERMAL_KEY
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase import Atoms

from experiments.importer import default_cache_dir
from metrics.columns import r_factor
from reconstruct.data import TomoData, from_dataset
from reconstruct.variants.base import variant_params
from reconstruct.variants.ptycho import build_model
from simulate.config import NoiseConfig, PotentialConfig, SimulationConfig, TruthConfig
from simulate.models.registry import build_model as build_sample
from simulate.store import Dataset, open_dataset
from simulate.tiltseries import truth_potential


def slices(volume: np.ndarray, n_slices: int, dz: float) -> torch.Tensor:
    """``[Z, X, Y]`` V -> ``[S, X, Y]`` V Å, voxels split as evenly as the count allows.

    Not :func:`reconstruct.tomography.bin_slices`, which needs ``S`` to divide ``Z``: the
    commensurate Σ9 grids have prime depths (31, 61 voxels)."""
    edges = np.linspace(0, volume.shape[0], n_slices + 1).round().astype(int)
    out = [volume[a:b].sum(0) * dz for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return torch.tensor(np.stack(out), dtype=torch.float32)


def forward(data: TomoData, volume: np.ndarray, n_slices: int) -> torch.Tensor:
    """Intensities ``[K, kx, ky]`` of projection 0 of ``data`` through ``volume`` (V)."""
    _, cfg = variant_params({"name": "fpp", "n_slices": n_slices, "post_align": False})
    model = build_model(data, cfg)
    model.object.potential.copy_(slices(volume, n_slices, data.voxel_size)[None])
    idx = torch.arange(data.positions.shape[1])
    return torch.cat([model(chunk) for chunk in idx.split(256)])


def snapshot_volumes(ds: Dataset, data: TomoData) -> list[np.ndarray]:
    """The truth-voxel potential ``[Z, X, Y]`` (V) of each stored MD snapshot of ``ds``, in the
    cell of the sample rebuilt from the dataset's own config. ``shape x voxel`` is not always
    that cell: abTEM divides the z length into equal slices near, not at, the voxel size."""
    cfg = SimulationConfig(truth=TruthConfig(voxel_size=data.voxel_size),
                           potential=PotentialConfig(parametrization=ds.meta["parametrization"]))
    atoms = build_sample(ds.config["sample"])
    # the thermal dataset stores ``snapshots`` (simulated), the static one ``truth_snapshots``
    name = "snapshots" if "snapshots" in ds.group["truth"] else "truth_snapshots"
    out = []
    for pos in np.asarray(ds.array(f"truth/{name}")):
        snap = Atoms(numbers=atoms.numbers, positions=pos, cell=atoms.cell, pbc=True)
        out.append(truth_potential(snap, cfg)[0].astype(np.float64))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("static_key")
    ap.add_argument("thermal_key")
    ap.add_argument("--cache", default=default_cache_dir(),
                    help="dataset cache (default: $PTYCHOBENCH_CACHE or ~/.cache/ptychobench)")
    ap.add_argument("--slices", default="1,2,4,0", help="slice counts; 0 is one per voxel")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    ds_s, ds_t = (open_dataset(k, args.cache) for k in (args.static_key, args.thermal_key))
    d_s, d_t = (from_dataset(ds, NoiseConfig(), "cpu", kinds={"diffraction"})
                for ds in (ds_s, ds_t))
    vols = snapshot_volumes(ds_t, d_t)
    stored = np.asarray(ds_s.array("truth/potential"), np.float64)
    print(f"grid {d_s.volume_shape}, voxel {d_s.voxel_size} Å, {len(vols)} snapshots; "
          f"rebuilt snapshot 0 vs stored static truth: max rel diff "
          f"{np.abs(vols[0] - stored).max() / np.abs(stored).max():.1e}")
    obs_s, obs_t = d_s.patterns[0].numpy(), d_t.patterns[0].numpy()
    print(f"R(static data, thermal data) = {r_factor(obs_s, obs_t):.5f}\n")
    print("| slices | floor R(F(V0), static) | R(mean F(Vk), thermal) | thermal incoherent |")
    print("|---|---|---|---|")
    for n in (int(s) or d_s.volume_shape[0] for s in args.slices.split(",")):
        f_static = forward(d_s, vols[0], n).numpy()
        f_each = torch.stack([forward(d_t, vk, n) for vk in vols]).mean(0).numpy()
        f_mean = forward(d_t, np.mean(vols, 0), n).numpy()
        print(f"| {n} | {r_factor(obs_s, f_static):.5f} | {r_factor(obs_t, f_each):.5f} "
              f"| {r_factor(f_each, f_mean):.5f} |")


if __name__ == "__main__":
    main()
