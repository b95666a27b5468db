"""Tiny self-consistent tilt series for the variant tests (test helper, not a test module).

A 16³ volume of two Gaussian blobs (V) on a 0.4 Å grid, seen at a few tilts about y: 4D-STEM
patterns made by MSET's own multislice forward model and ADF signals by the linear projector,
so that every variant can be asked to recover a known volume from data it can explain.
"""

from __future__ import annotations

import numpy as np
import torch

from reconstruct.data import TomoData

V = 0.4  # Å


def tiny_data(n: int = 16, tilts: int = 3, step: float = 0.8) -> TomoData:
    """Geometry only: ``tilts`` tilts over ±60°, a raster of ``step`` Å over the cell."""
    g = np.arange(0, n * V, step)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    euler = torch.zeros(tilts, 3)
    euler[:, 1] = torch.linspace(-np.pi / 3, np.pi / 3, tilts)
    pos_t = torch.as_tensor(pos, dtype=torch.float32).expand(tilts, -1, -1)
    return TomoData(volume_shape=(n, n, n), voxel_size=V, euler=euler,
                    shifts=torch.zeros(tilts, 2), energy=300e3, semiangle=0.021,
                    aberrations={"C10": 100.0}, positions=pos_t, haadf_positions=pos_t)


def blobs(n: int) -> torch.Tensor:
    """Two Gaussian blobs of 150 and 60 V in an ``n³`` volume ``[z, x, y]``."""
    z, x, y = torch.meshgrid(*(torch.arange(n, dtype=torch.float32),) * 3, indexing="ij")
    vol = torch.zeros(n, n, n)
    for c, h in (((6.0, 7.0, 8.0), 150.0), ((9.5, 9.0, 6.0), 60.0)):
        vol += h * torch.exp(-((z - c[0]) ** 2 + (x - c[1]) ** 2 + (y - c[2]) ** 2) / 1.5)
    return vol


def self_consistent_data(tilts: int = 3) -> tuple[TomoData, torch.Tensor]:
    """Patterns by MSET's forward model and ADF signals by the linear projector, of the blobs."""
    from reconstruct.variants.linear import LinearTomography
    from reconstruct.variants.mset import MultisliceTomography

    data, truth = tiny_data(tilts=tilts), blobs(16)
    model = MultisliceTomography(data, 16, 16)
    with torch.no_grad():
        model.volume.copy_(truth)
        every = torch.arange(len(data.positions[0]))
        data.patterns = torch.stack([model(t, every) for t in range(tilts)])
        data.haadf = LinearTomography(data)(truth).reshape(tilts, 8, 8)
    return data, truth
