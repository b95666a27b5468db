"""Issue 16: the shared pieces of paper 000's pipeline, against analytic answers and data whose
truth is known exactly (our own forward models). The abTEM runs are in
``test_e2e_physics.py`` (slow)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from reconstruct.brightfield import estimate_defocus
from reconstruct.data import TomoData
from reconstruct.optics import energy2sigma, energy2wavelength, probe_from_aberrations
from reconstruct.regularize import butterworth_3d
from reconstruct.scanning import fourier_shift, scan_grid
from reconstruct.tomography import (
    TiltSeriesGeometry,
    centred_shifts,
    euler_matrix,
    translation_gauge,
)
from reconstruct.variants import variant_params
from reconstruct.variants.mset import MultisliceTomography
from reconstruct.variants.sequential import SequentialConfig, joint_linear, projection_offsets
from simulate.errors import ConfigError
from tests.tiny import self_consistent_data

E = 200e3
N, V = 96, 0.2


def _weak_phase_patterns(defocus: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Far-field patterns ``[576, 48, 48]`` of a random weak-phase object (40 Gaussian atoms
    of 20 V, 0.3 Å wide) scanned on a 24² raster at 0.8 Å with a probe of ``defocus`` Å."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(N, dtype=torch.float64) * V
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    pot = torch.zeros(N, N, dtype=torch.float64)
    for c in torch.rand(40, 2, generator=gen, dtype=torch.float64) * N * V:
        dx = (xx - c[0] + N * V / 2) % (N * V) - N * V / 2
        dy = (yy - c[1] + N * V / 2) % (N * V) - N * V / 2
        pot += 20 * torch.exp(-(dx**2 + dy**2) / (2 * 0.3**2))
    obj = torch.exp(1j * energy2sigma(E) * pot)
    probe = probe_from_aberrations((N, N), (V, V), E, 25e-3, {"C10": -defocus},
                                   centered=True, dtype=torch.float64)
    pos = scan_grid((0.0, 0.0), (0.8, 0.8), (24, 24), dtype=torch.float64)
    waves = fourier_shift(probe, pos / V - N // 2) * obj
    patterns = torch.fft.fftshift(torch.fft.fft2(waves).abs() ** 2, dim=(-2, -1))
    return patterns[:, N // 2 - 24:N // 2 + 24, N // 2 - 24:N // 2 + 24], pos


@pytest.mark.parametrize("defocus", [120.0, -80.0, 250.0])
def test_tcbf_finds_the_defocus_of_self_consistent_data(defocus):
    """Under- and overfocus, to within 10 Å (measured: 0.2, 1.5 and 0.7 Å), with its sign: the
    parallax of the wrong sign doubles the misregistration."""
    patterns, pos = _weak_phase_patterns(defocus)
    est = estimate_defocus(patterns, pos, (1 / (N * V),) * 2, 25e-3, energy2wavelength(E))
    assert abs(est.defocus - defocus) < 10.0, est.defocus
    assert float(est.curve.max()) > 1.5 * float(est.curve[est.curve.numel() // 2])


def _blob_volume(n: int, centres: list[tuple[float, float, float]], width: float = 1.2
                 ) -> torch.Tensor:
    """Gaussian blobs at ``centres`` (z, x, y) voxel indices in an ``n³`` volume, float64."""
    z, x, y = torch.meshgrid(*(torch.arange(n, dtype=torch.float64),) * 3, indexing="ij")
    vol = torch.zeros(n, n, n, dtype=torch.float64)
    for cz, cx, cy in centres:
        vol += torch.exp(-((z - cz) ** 2 + (x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
    return vol


def test_the_translation_gauge_leaves_every_projection_unchanged():
    """A blob 2 Å off the pivot projects like the blob on the pivot with the shifts that
    :func:`centred_shifts` gives; :func:`translation_gauge` finds that offset again from the
    two sets of shifts, and the projections' centres of mass are the centred shifts."""
    n, v = 24, 0.5
    c = ((n - 1) / 2, n / 2, n / 2)
    off = torch.tensor([1.0, -1.5, 2.0], dtype=torch.float64)  # (x, y, z) Å
    moved = _blob_volume(n, [(c[0] + off[2] / v, c[1] + off[0] / v, c[2] + off[1] / v)])
    centred = _blob_volume(n, [c])
    angles = torch.zeros(4, 3, dtype=torch.float64)
    angles[:, 1] = torch.deg2rad(torch.tensor([-50.0, -15.0, 20.0, 45.0]))
    rotation = euler_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    tau = torch.tensor([[0.5, -0.3], [1.0, 0.2], [-0.7, 0.4], [0.0, -1.0]], dtype=torch.float64)
    with torch.no_grad():
        a = TiltSeriesGeometry(angles, tau, (v,) * 3, c).project(moved)
        new = centred_shifts(tau, rotation, off)
        b = TiltSeriesGeometry(angles, new, (v,) * 3, c).project(centred)
    assert float((a - b).abs().max()) < 0.02 * float(a.abs().max())
    assert torch.allclose(translation_gauge(tau, new, rotation), off, atol=1e-9)
    assert torch.allclose(projection_offsets(b, v, c[1:]), new, atol=0.03)


def _synthetic_series(n: int = 32, v: float = 0.4, tilts: int = 7, seed: int = 3
                      ) -> tuple[TomoData, torch.Tensor, torch.Tensor]:
    """Linear projections ``[T, n, n]`` of a compact blob particle, tilted over ±60° and
    shifted by up to 3.4 Å, and the TomoData of its nominal (unshifted) geometry."""
    gen = torch.Generator().manual_seed(seed)
    c = ((n - 1) / 2, n / 2, n / 2)
    offsets = (torch.rand(14, 3, generator=gen) - 0.5) * 12  # voxels
    offsets -= offsets.mean(0)  # centred on the pivot: the gauge the fit fixes
    centres = [tuple(ci + float(d) for ci, d in zip(c, o, strict=True)) for o in offsets]
    vol = _blob_volume(n, centres, width=1.0).float() * 30
    euler = torch.zeros(tilts, 3)
    euler[:, 1] = torch.deg2rad(torch.linspace(-60, 60, tilts))
    shifts = (torch.rand(tilts, 2, generator=gen) * 2 - 1) * 3.4
    shifts -= shifts.mean(0)
    proj = TiltSeriesGeometry(euler, shifts, (v,) * 3, c).project(vol).detach()
    data = TomoData(volume_shape=(n, n, n), voxel_size=v, euler=euler,
                    shifts=torch.zeros(tilts, 2), energy=E, semiangle=0.025, aberrations={})
    return data, proj, shifts


def test_joint_linear_recovers_shifts_of_up_to_3_4_angstrom():
    """Algorithm 2 on exact linear projections (no background, so no threshold: thresholded
    projections are no projection of any volume and bias the fit, by 0.1-0.3 Å here): the
    shifts to a median of 0.1 Å and a maximum of 0.15 Å, in the gauge of a particle centred
    on the pivot (measured: 0.03 and 0.06 Å)."""
    data, proj, truth = _synthetic_series()
    _, _, shifts, fitted = joint_linear(proj, data, SequentialConfig(joint_threshold=0.0))
    r = fitted.r_factor
    err = (shifts - truth).norm(dim=-1)
    assert float(err.median()) < 0.1 and float(err.max()) < 0.15, err
    assert r < 0.15, r


def test_butterworth_3d_is_self_adjoint_and_halves_at_the_cutoff():
    """``<W x, y> = <x, W y>``; a plane wave at ``|k| = kc`` keeps half its amplitude."""
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(8, 10, 12, generator=gen, dtype=torch.float64) for _ in range(2))
    voxel = (0.5, 0.4, 0.4)
    w = lambda a: butterworth_3d(a, voxel, 0.8, 2)  # noqa: E731
    assert torch.allclose((w(x) * y).sum(), (x * w(y)).sum(), rtol=1e-10)
    kz = 1 / (8 * 0.5) * 2  # 0.5 1/Å
    kx = 1 / (10 * 0.4) * 2  # 0.5 1/Å
    kc = math.hypot(kz, kx)
    z, i = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    wave = torch.cos(2 * math.pi * (kz * z * 0.5 + kx * i * 0.4))[..., None].expand(8, 10, 12)
    out = butterworth_3d(wave.double(), voxel, kc, 3)
    assert torch.allclose(out, 0.5 * wave.double(), atol=1e-6)


def test_per_tilt_probes_reproduce_the_shared_probe_model():
    """Giving every tilt the shared probe (and the nominal positions) changes nothing."""
    data, truth = self_consistent_data(tilts=3)
    shared = MultisliceTomography(data, 16, 16)
    probe = shared.probe().detach()
    own = MultisliceTomography(data, 16, 16, probes=probe.expand(3, -1, -1, -1).clone())
    every = torch.arange(data.positions.shape[1])
    with torch.no_grad():
        for m in (shared, own):
            m.volume.copy_(truth)
        for t in range(3):
            assert torch.allclose(own(t, every), shared(t, every), rtol=1e-5, atol=1e-9)
    assert len(own.parameter_groups()["slice_thickness"]) == 1  # one shared propagator
    assert len(own.parameter_groups()["probe"]) == 2 * 3


def test_tcbf_on_the_tiny_series_reads_its_overfocus():
    """The tiny series' probe is 100 Å overfocused (C10 = +100 Å): tcBF reads that at the
    specimen's middle, which the variant refers back to the cell entrance."""
    data, _ = self_consistent_data(tilts=3)
    _, params = variant_params({"name": "tcbf"})
    from reconstruct.variants import VARIANTS

    rec = VARIANTS["tcbf"].reconstruct(data, params)
    assert np.allclose(rec.info["defocus_A"], -100.0, atol=15.0), rec.info


@pytest.mark.parametrize("key,value", [("defocus", "guess"), ("joint_threshold", 1.5),
                                       ("joint_downsample", 0), ("init_volume", "random"),
                                       ("shifts_lr", -1.0), ("butterworth_order", 0)])
def test_bad_e2e_parameters_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=f"algorithm.{key}"):
        variant_params({"name": "e2e", key: value})


def test_a_downsampling_that_does_not_divide_the_grid_is_refused_before_compute():
    data, _ = self_consistent_data(tilts=2)
    from reconstruct.variants import VARIANTS

    _, params = variant_params({"name": "sequential", "joint_downsample": 3})
    with pytest.raises(ConfigError, match="algorithm.joint_downsample"):
        VARIANTS["sequential"].reconstruct(dataclasses.replace(data), params)


def test_subsampled_half_sets_are_disjoint_interleaved_rasters():
    """Rows 0, f, 2f... and f/2, 3f/2...: no pattern in both, each a raster of f x the step."""
    from reconstruct.data import subsample_rows
    from reconstruct.scanning import raster_shape

    data, _ = self_consistent_data(tilts=2)
    a, b = subsample_rows(data, 2, 0), subsample_rows(data, 2, 1)
    assert a.patterns.shape[1] + b.patterns.shape[1] == data.patterns.shape[1]
    both = torch.cat([a.positions, b.positions], 1)
    assert torch.unique(both[0], dim=0).shape[0] == data.positions.shape[1]
    assert raster_shape(a.positions[0]) == (4, 8)
    step = a.positions[0, 8, 0] - a.positions[0, 0, 0]
    assert float(step) == pytest.approx(1.6)  # 2 x the 0.8 Å step along x
    for half in (a, b):  # each pattern still belongs to its own position
        row = torch.isclose(data.positions[0, :, None], half.positions[0, None]).all(-1)
        i, j = row.nonzero(as_tuple=True)
        assert torch.equal(data.patterns[0, i], half.patterns[0, j])
    assert a.haadf.shape == (2, 4, 8)


def test_half_set_fsc_reads_noise_and_refuses_bad_settings(tmp_path):
    """Two half volumes that differ only by noise: their FSC falls below half-bit at a
    coarser resolution the more noise; identical halves reach Nyquist (2 voxels)."""
    from types import SimpleNamespace

    from experiments.halfsets import check_half_sets, score_half_sets
    from experiments.scoring import ScoringConfig
    from reconstruct.loop import History
    from reconstruct.result import Reconstruction
    from reconstruct.variants.base import Variant
    from simulate.config import NoiseConfig

    data, truth = self_consistent_data(tilts=2)

    def fake(level: float) -> Variant:
        def run(d, p, seed, progress):
            noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed))
            return Reconstruction(history=History(), volume=truth + level * noise)
        return Variant("noisy", SimpleNamespace, {"diffraction"}, run)

    t = SimpleNamespace(voxel_size=0.4, has=lambda k: False)
    res = {lv: score_half_sets(fake(lv), None, (data, data), t, 0, tmp_path)["fsc_half_bit_A"]
           for lv in (0.0, 3.0, 30.0)}
    assert res[0.0] == pytest.approx(0.8) and res[0.0] < res[3.0] < res[30.0], res
    assert (tmp_path / "fsc_halves.png").is_file()
    for cfg, noise, key in ((ScoringConfig(half_sets="halves"), NoiseConfig(), "half_sets"),
                            (ScoringConfig(half_sets="subsample", half_subsample=1),
                             NoiseConfig(), "half_subsample"),
                            (ScoringConfig(half_sets="poisson"),
                             NoiseConfig(dose=float("inf")), "half_sets")):
        with pytest.raises(ConfigError, match=f"scoring.{key}"):
            check_half_sets(cfg, noise)
