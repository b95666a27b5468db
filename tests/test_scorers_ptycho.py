"""The ptychography scorers (papers 002, 003) against synthetic images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.scorers_ptycho import score_displacements, score_frc, score_thickness
from experiments.scoring import ScoringConfig
from metrics.synthetic import render_gaussians

A, PIXEL, CELLS = 3.905, 3.905 / 20, 3


class FakeTruth:
    """The part of :class:`experiments.scoring.Truth` the scorers read."""

    def __init__(self, arrays: dict[str, np.ndarray], voxel: float = PIXEL) -> None:
        self.arrays, self.voxel_size = arrays, voxel

    def has(self, name: str) -> bool:
        return any(n in self.arrays for n in name.split("|"))

    def array(self, name: str) -> np.ndarray:
        return self.arrays[next(n for n in name.split("|") if n in self.arrays)]


def srtio3_atoms() -> tuple[np.ndarray, np.ndarray]:
    """One unit cell's columns (Sr corner, TiO centre, two O edges) tiled periodically."""
    basis = [(38, 0.0, 0.0), (22, 0.5, 0.5), (8, 0.5, 0.5), (8, 0.5, 0.0), (8, 0.0, 0.5)]
    pos, num = [], []
    for i in range(CELLS):
        for j in range(CELLS):
            for z, fx, fy in basis:
                pos.append(((i + fx) * A, (j + fy) * A, 2.0))
                num.append(z)
    return np.array(pos), np.array(num)


def image(positions: np.ndarray, numbers: np.ndarray, tio_shift: tuple[float, float],
          sigma: float = 0.3) -> np.ndarray:
    """Projected potential with the TiO columns displaced by ``tio_shift`` Å (periodic)."""
    xy = positions[:, :2].copy()
    xy[numbers == 22] += tio_shift  # Ti and the O of the same column move together
    xy[(numbers == 8) & np.isin(np.round(xy / A * 2) % 2, 1).all(1)] += tio_shift
    n = CELLS * 20
    img = np.zeros((n, n))
    for dx in (-1, 0, 1):  # periodic images
        for dy in (-1, 0, 1):
            img += render_gaussians(xy + np.array([dx, dy]) * n * PIXEL, np.where(
                numbers == 38, 3.0, 1.0), sigma, (n, n), PIXEL, origin=(0.0, 0.0))
    return img


@pytest.mark.parametrize("shift_pm", [0.0, 3.0])
def test_displacements_measure_a_known_tio_offset(shift_pm):
    pos, num = srtio3_atoms()
    img = image(pos, num, (shift_pm / 100, 0.0))
    est = {"object_states": img[None, None], "object_sampling": np.array([PIXEL, PIXEL])}
    truth = FakeTruth({"truth/positions": pos, "truth/numbers": num})
    out = score_displacements(est, truth, ScoringConfig(column_radius=0.5))
    assert out["d_sr_tio_pm"] == pytest.approx(shift_pm, abs=0.3)
    assert out["d_o_tio_pm"] == pytest.approx(shift_pm, abs=0.3)


def test_displacements_skip_a_specimen_that_is_not_srtio3():
    pos, num = srtio3_atoms()
    est = {"object_states": np.zeros((1, 1, 60, 60)), "object_sampling": np.array([PIXEL] * 2)}
    truth = FakeTruth({"truth/positions": pos, "truth/numbers": np.full_like(num, 14)})
    assert score_displacements(est, truth, ScoringConfig()) == {}


def test_frc_of_a_crystal_counts_only_the_rings_with_reflections():
    """The truth against itself reaches Nyquist (2 pixels); blurred and with a little noise,
    it ends where the blurred signal sinks below the noise (measured 0.59 Å, 1.5 x Nyquist's
    period; a blur alone would not lower a correlation)."""
    pos, num = srtio3_atoms()
    true = image(pos, num, (0.0, 0.0), sigma=0.15)  # power up to Nyquist
    truth = FakeTruth({"truth/potential": true[None] / PIXEL})
    same = score_frc({"object_states": true[None, None],
                      "object_sampling": np.array([PIXEL] * 2)}, truth, ScoringConfig())
    assert same["frc_resolution_A"] == pytest.approx(2 * PIXEL, rel=0.05)
    f = np.fft.fftfreq(true.shape[0], PIXEL)
    blur = np.exp(-(f[:, None] ** 2 + f[None] ** 2) * 2.0)  # a Gaussian transfer
    noisy = np.fft.ifft2(np.fft.fft2(true) * blur).real
    noisy += np.random.default_rng(0).normal(0, 1e-3 * true.std(), true.shape)
    blurred = score_frc({"object_states": noisy[None, None],
                         "object_sampling": np.array([PIXEL] * 2)}, truth, ScoringConfig())
    assert blurred["frc_resolution_A"] > 1.3 * same["frc_resolution_A"]


def test_thickness_is_the_sum_of_the_slices():
    truth = FakeTruth({"truth/truth_thickness_A": np.array([31.24])})
    out = score_thickness({"slice_thickness": np.array([7.5, 7.5, 7.5, 7.5])}, truth,
                          ScoringConfig())
    assert out["thickness_A"] == pytest.approx(30.0)
    assert out["thickness_error_rel"] == pytest.approx(1.24 / 31.24)
