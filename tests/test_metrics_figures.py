"""Figures: built without pyplot, saved to disk, and showing the right counts."""

from pathlib import Path

import numpy as np
import pytest

from metrics.figures import (
    plot_column_scatter,
    plot_deviation_histogram,
    plot_fsc,
    plot_intensity_histogram,
    plot_slab_overlay,
)
from metrics.resolution import fourier_shell_correlation
from metrics.synthetic import render_gaussians


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_slab_overlay_counts_true_false_missing(tmp_path: Path) -> None:
    true = np.array([[2.0, 2.0, 4.0], [5.0, 2.0, 4.2], [2.0, 5.0, 3.9], [5.0, 5.0, 4.1],
                     [3.5, 3.5, 9.0]])  # the last is outside the 2 Å slab around z = 4
    z = np.array([8, 8, 56, 56, 56])
    traced = np.array([[2.05, 2.0, 4.0], [5.0, 2.1, 4.2], [2.0, 5.0, 3.9], [6.5, 6.5, 4.0],
                       [3.5, 3.5, 9.0]])
    labels = np.array([8, 56, 56, 8, 56])  # 1 wrong species, 1 spurious, true atom 3 missing
    vol = render_gaussians(true, 1.0, 0.4, (24, 20, 20), 0.4)
    path = tmp_path / "slab.png"
    fig = plot_slab_overlay(vol, 0.4, (0, 0, 0), traced, true, labels, z, z_center=4.0,
                            path=path)
    assert path.stat().st_size > 1000
    assert _legend_texts(fig) == ["true (2)", "false (2)", "missing (1)"]
    with pytest.raises(ValueError, match="selects no slice"):
        plot_slab_overlay(vol, 0.4, (0, 0, 0), traced, true, z_center=100.0)


def test_deviation_histogram_quotes_the_rmsd_and_the_components(tmp_path: Path) -> None:
    dev = np.zeros((4, 3))
    dev[:, 2] = [0.1, -0.1, 0.1, -0.1]  # 10 pm along z only
    dev[0, 0] = 0.2  # one atom also 20 pm along x
    path = tmp_path / "deviations.png"
    fig = plot_deviation_histogram(dev, path=path)
    assert path.stat().st_size > 1000
    assert fig.axes[0].get_title() == "4 matched atoms, RMSD 14.1 pm"  # sqrt((4 x 10² + 20²) / 4)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "Δx (rms 10.0 pm)", "Δy (rms 0.0 pm)", "Δz (rms 10.0 pm)"]
    with pytest.raises(ValueError, match=r"\[K, 3\]"):
        plot_deviation_histogram(dev[:, :2])


def test_histogram_fsc_and_scatter_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inten = np.concatenate([rng.normal(0.2, 0.05, 20), rng.normal(1, 0.1, 50),
                            rng.normal(2, 0.1, 30)])
    labels = np.repeat([0, 29, 79], [20, 50, 30])
    fig = plot_intensity_histogram(inten, labels, {29: "Cu", 79: "Au"},
                                   path=tmp_path / "hist.png")
    assert _legend_texts(fig) == ["non-atom", "Cu", "Au"]
    vol = rng.normal(size=(16, 16, 16))
    fsc = fourier_shell_correlation(vol, vol + rng.normal(size=vol.shape), 0.5)
    fig = plot_fsc([fsc], ["halves"], path=tmp_path / "fsc.png")
    assert len(fig.axes[0].get_lines()) == 4  # curve + three thresholds
    assert _legend_texts(fig)[0] == f"halves ({fsc.resolution('half_bit'):.2f} Å at half-bit)"
    # against the truth the legend must quote the 0.5 crossing that metrics.json reports
    blur = np.fft.ifftn(np.fft.fftn(vol) * np.exp(-40 * sum(
        np.meshgrid(*[np.fft.fftfreq(16) ** 2] * 3, indexing="ij")))).real
    fsc = fourier_shell_correlation(vol, blur + 0.1 * rng.normal(size=vol.shape), 0.5)
    fig = plot_fsc(fsc, ["truth"], (0.5,))
    assert fsc.resolution(0.5) != fsc.resolution("half_bit")
    assert _legend_texts(fig)[0] == f"truth ({fsc.resolution(0.5):.2f} Å at 0.5)"
    com = rng.normal(0, 0.1, (10, 4, 2))
    fig = plot_column_scatter(com, rng.normal(0, 0.1, (30, 4, 2)), path=tmp_path / "com.png")
    assert len(fig.axes) == 4
    for name in ("hist.png", "fsc.png", "com.png"):
        assert (tmp_path / name).stat().st_size > 1000
