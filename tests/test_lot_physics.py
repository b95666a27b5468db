"""Issue 15, acceptance 1 on abTEM data: LOT's three interactions on the ci decahedron.

``experiment=paper004_decahedron`` at ``scale=ci``: the (4, 3, 1) Marks decahedron (318 Pt
atoms, 2 nm) in a 28.8 Å cube, HAADF 30-64 mrad, 300 kV, 25 mrad, focused at the cell
entrance, 8 tilts over -72°..70°, a 0.48 Å step, one frozen phonon, PRISM (interpolation 4),
noise-free; LOT with its defaults (grid start, 300 iterations). Measured on 2026-12-02
(2 cores; about 100 s of abTEM, then 49 s direct, 54 s rigid, 69 s adaptive):

    interaction  RMSD (pm)  tracing error  R-factor (eq. 11)  final mean-square loss
    direct       13.06      0.041          0.297              5.64e-4
    rigid        11.22      0.009          0.235              4.30e-4
    adaptive     11.18      0.009          0.228              4.25e-4

The depth-dependent interaction helps: rigid DDI beats the direct projection by 1.8 pm (14 %)
in RMSD and by 21 % in R-factor, and finds 6 more of the 318 atoms. Adaptive DDI (the default
``probe_model: optics``: a learnable defocus, which moves by -3.4 Å, and a per-depth blur)
beats rigid in both, by 0.04 pm (0.4 %) in RMSD and 3 % in R-factor: a thin margin, asserted
as the acceptance's ``<=``. The free-pixel kernels (``probe_model: pixels``) fit the data
better still (loss 3.84e-4) but place the atoms worse than rigid (11.37 pm). The preset takes
about 5 minutes on 2 cores, so the tests are ``slow``; the default suite proves rigid < direct
and the adaptive optics' recovery of a miscalibrated focus on LOT's own forward model
(tests/test_lot.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def decahedron(tmp_path_factory, sim_cache) -> pd.DataFrame:
    tmp = tmp_path_factory.mktemp("lot")
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(sim_cache), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "experiments.cli", "experiment=paper004_decahedron",
           "progress=false", f"hydra.sweep.dir={tmp / 'runs'}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_csv(tmp / "runs" / "results.csv").set_index("algorithm.interaction")
    assert (df["status"] == "ok").all()
    return df


@pytest.mark.slow
def test_depth_dependent_interaction_beats_the_direct_projection(decahedron):
    rmsd, r = decahedron["rmsd_pm"], decahedron["r_factor"]
    assert (decahedron["tracing_error"] < 0.1).all()  # measured 0.009-0.041
    assert rmsd["rigid"] < rmsd["direct"] - 1.0  # measured 11.22 against 13.06 pm
    assert r["rigid"] < 0.9 * r["direct"]  # measured 0.235 against 0.297
    assert rmsd["adaptive"] < rmsd["direct"] and r["adaptive"] < r["direct"]


@pytest.mark.slow
def test_adaptive_ddi_fits_at_least_as_well_as_rigid(decahedron):
    r = decahedron["r_factor"]
    assert r["adaptive"] <= r["rigid"]  # measured 0.228 against 0.235


@pytest.mark.slow
def test_adaptive_ddi_places_atoms_at_least_as_well_as_rigid(decahedron):
    rmsd = decahedron["rmsd_pm"]
    assert rmsd["adaptive"] <= rmsd["rigid"]  # measured 11.18 against 11.22 pm
