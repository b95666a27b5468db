"""Issue 14, acceptance on abTEM data: the paper 002 and 003 presets through the app.

Mistilt (acceptance 1, default suite): SrTiO3 at ``scale=ci`` (3 x 3 x 8 unit cells, 31 Å,
eight frozen phonons, noise-free, patterns to 50 mrad), 10 mrad along x, FPP and APP with
their default settings (``experiment=paper002_mistilt sample.tilt_x=10``). Measured on
2026-12-01 (2 cores, about 80 s with the simulation when alone):

    algorithm  tilt error  thickness (Å)  thickness error  d(Sr-TiO)  d(O-TiO)
    fpp        0.89 mrad   35.1 (fixed)   12.5 %           1.11 pm    0.95 pm
    app        0.42 mrad   31.1           0.5 %            1.09 pm    0.93 pm

(FPP's tilt is the slope of its post-alignment shifts along z, paper 002 Fig. 5.) Asserted
with a stated margin: APP's tilt within 1 mrad (measured 0.42) and thickness within 10 %
(measured 0.5 %), FPP's thickness left at the cell depth, APP's d errors below 1.5 pm. The
d errors sit on a floor that the data carry: eight frozen-phonon configurations leave each
column's mean position a little off its site (at 0 mrad, the same sweep measured 0.93 and
1.02 pm for APP, 0.92 and 1.00 pm for FPP), so the paper's < 1 pm is not resolved at ci, and
APP's d(O-TiO) below FPP's (0.93 against 0.95 pm here) is within that floor and NOT asserted.

Tilt map (acceptance 2, slow): ``experiment=paper002_tilt_map sample=srtio3_gradient`` at
ci (8 x 2 x 8 cells, 1.9e4 e/Å², Poisson likelihood, 200 iterations) recovers the 0-10 mrad
ramp with a profile RMS error of 0.51 mrad and a thickness of 32.0 Å (true 31.24), measured
2026-12-02 (noise seeds 1 and 2: 0.55 and 0.67 mrad). Before, 1.84 mrad on a 4-cell
crystal narrower than two probe widths, with the amplitude loss (its low-count bias took the
thickness 20 % thick, and the tilts scale with it), and with a local regauge that was not
checked against the data (it was kept where the first-order warp changed the patterns).
Asserted below 1.0 mrad (the acceptance asks < 1.5) and the thickness within 10 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sweep(tmp: Path, cache: Path, *overrides: str) -> pd.DataFrame:
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(cache), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "experiments.cli", *overrides, "progress=false",
           f"hydra.sweep.dir={tmp / 'runs'}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return pd.read_csv(tmp / "runs" / "results.csv").set_index("algorithm")


def test_app_recovers_a_10_mrad_mistilt_and_the_thickness(tmp_path, sim_cache):
    df = _sweep(tmp_path, sim_cache, "experiment=paper002_mistilt", "sample.tilt_x=10.0")
    assert (df["status"] == "ok").all()
    app, fpp = df.loc["app"], df.loc["fpp"]
    assert app["tilt_error_mrad"] < 1.0  # measured 0.42
    assert app["thickness_error_rel"] < 0.10  # measured 0.005
    assert fpp["thickness_error_rel"] > 0.10  # FPP keeps the starting (cell) thickness
    # at the frozen-phonon floor (about 1 pm at 0 mrad, see the module docstring)
    assert app["d_o_tio_pm"] < 1.5 and app["d_sr_tio_pm"] < 1.5


@pytest.mark.slow
def test_app_map_recovers_the_graded_tilt_profile(tmp_path, sim_cache):
    df = _sweep(tmp_path, sim_cache, "experiment=paper002_tilt_map", "sample=srtio3_gradient")
    assert df.loc["app_map", "tilt_profile_error_rms_mrad"] < 1.0  # measured 0.51
    assert df.loc["app_map", "thickness_error_rel"] < 0.10  # measured 0.024


@pytest.mark.slow
def test_app_map_recovers_a_uniform_thickness_map(tmp_path, sim_cache):
    """The per-position thickness map (``thickness_map: true``) on the same graded slab, whose
    thickness is 31.24 Å everywhere: measured median error 2.5 % (the global thickness 32.2 Å,
    3.0 %), with the tilt profile still at 0.48 mrad, from a 35.1 Å (cell) start."""
    df = _sweep(tmp_path, sim_cache, "experiment=paper002_tilt_map", "sample=srtio3_gradient",
                "algorithm.thickness_map=true")
    assert df.loc["app_map", "thickness_map_error_rel"] < 0.06  # measured 0.025
    assert df.loc["app_map", "tilt_profile_error_rms_mrad"] < 1.0  # measured 0.48
