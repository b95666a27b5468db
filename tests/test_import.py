"""ptychobench-import: an external tilt series, simulated here with plain abTEM calls (not through
``simulate/``), imported into the dataset format and compared with the native simulation."""

from __future__ import annotations

import math

import abtem
import numpy as np
import pytest
import yaml
import zarr
from ase import Atoms
from conftest import tiny_config

from experiments.importer import FileReader, import_series, main
from experiments.scoring import Truth
from reconstruct.data import from_dataset
from reconstruct.variants import VARIANTS
from reconstruct.variants.base import variant_params
from simulate.config import NoiseConfig
from simulate.errors import ConfigError
from simulate.pipeline import load_dataset, simulation_config
from simulate.store import Dataset, verify_entry
from simulate.validate import validate_simulation

L, VOXEL, STEP, THETAS = 12.8, 0.4, 1.6, (-45.0, 45.0)
ENERGY, SEMIANGLE, DEFOCUS, ADF_DEFOCUS = 300e3, 21.0, 30.0, 0.0
SIGMA, PHONON_SEED = 0.08, 3  # one frozen-phonon configuration, as tiny_config's phonons
INF = NoiseConfig(dose=math.inf)


def au_atoms() -> Atoms:
    """Six Au atoms of an fcc fragment about the centre of a 12.8 Å cube."""
    a = 2.04
    rel = np.array([[0, 0, 0], [a, a, 0], [a, 0, -a], [0, -a, a], [-a, 0, -a], [-a, a, a]])
    return Atoms("Au6", positions=rel + L / 2, cell=[L] * 3, pbc=True)


def r_y(theta_deg: float) -> np.ndarray:
    """R_y(θ), right-handed about +y (CONVENTIONS.md)."""
    c, s = np.cos(np.deg2rad(theta_deg)), np.sin(np.deg2rad(theta_deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def abtem_series(atoms: Atoms) -> dict[str, np.ndarray]:
    """Patterns [T, 8, 8, k, k], ADF [T, 8, 8] (own defocus), raster [P, 2], the detector's
    reciprocal sampling and the truth potential, from abTEM alone."""
    g = np.arange(8) * STEP
    raster = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    diff, adf = [], []
    for j, theta in enumerate(THETAS):
        tilted = atoms.copy()
        tilted.positions = (atoms.positions - L / 2) @ r_y(theta).T + L / 2
        phonons = abtem.FrozenPhonons(tilted, num_configs=1, sigmas={"Au": SIGMA},
                                      seed=PHONON_SEED * 100003 + j)
        potential = abtem.Potential(phonons, sampling=0.1, slice_thickness=1.0)
        scan = abtem.CustomScan(raster)
        runs = []
        for defocus, detector in ((DEFOCUS, abtem.PixelatedDetector(max_angle=30.0)),
                                  (ADF_DEFOCUS, abtem.AnnularDetector(30.0, 64.0))):
            probe = abtem.Probe(energy=ENERGY, semiangle_cutoff=SEMIANGLE,
                                aberrations={"defocus": defocus})
            runs.append(probe.scan(potential, scan=scan, detectors=[detector])
                        .compute(progress_bar=False))
        diff.append(np.asarray(runs[0].array, np.float32).reshape(8, 8, *runs[0].shape[-2:]))
        adf.append(np.asarray(runs[1].array, np.float32).reshape(8, 8))
        dk = float(runs[0].sampling[0])
    truth = abtem.Potential(atoms, sampling=VOXEL, slice_thickness=VOXEL, projection="finite")
    pot = np.asarray(truth.build().compute(progress_bar=False).array, np.float32) / VOXEL
    return {"diffraction": np.stack(diff), "haadf": np.stack(adf), "raster": raster,
            "dk": np.float64(dk), "potential": pot}


def metadata() -> dict:
    return {
        "name": "au6",
        "microscope": {"energy": ENERGY, "semiangle": SEMIANGLE, "defocus": DEFOCUS},
        "grid": {"voxel_size": VOXEL},
        "scan": {"start": [0.0, 0.0], "step": STEP},
        "detector": {"reciprocal_sampling": None, "adf_inner": 30.0, "adf_outer": 64.0,
                     "adf_defocus": ADF_DEFOCUS},
        "tilts": {"angles": list(THETAS)},
        "measurements": {"diffraction": "patterns.npy", "haadf": "series.npz:adf"},
        "truth": {"positions": "series.npz:positions", "numbers": ["Au"] * 6,
                  "potential": "series.npz:potential"},
        "simulation": {"potential_sampling": 0.1, "slice_thickness": 1.0,
                       "parametrization": "lobato", "num_configurations": 1},
    }


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """The abTEM series saved as npy/npz (+ HDF5 and zarr copies) and its YAML."""
    root = tmp_path_factory.mktemp("external")
    atoms = au_atoms()
    s = abtem_series(atoms)
    np.save(root / "patterns.npy", s["diffraction"])
    np.savez(root / "series.npz", adf=s["haadf"], positions=atoms.positions,
             potential=s["potential"])
    meta = metadata()
    meta["detector"]["reciprocal_sampling"] = float(s["dk"])
    (root / "series.yaml").write_text(yaml.safe_dump(meta))
    return root, meta, s, atoms


def write_yaml(root, meta: dict, name: str = "series.yaml"):
    path = root / name
    path.write_text(yaml.safe_dump(meta))
    return path


@pytest.fixture(scope="module")
def imported(external, tmp_path_factory):
    root, *_ = external
    ds, written = import_series(root / "series.yaml", tmp_path_factory.mktemp("cache"))
    assert written
    return ds


def test_imported_entry_is_a_verified_dataset_with_provenance(imported, external, capsys):
    root, _, s, atoms = external
    verify_entry(imported.path)
    assert imported.key.startswith("import-") and imported.path.name == imported.key
    assert np.array_equal(imported.array("measurements/diffraction"), s["diffraction"])
    assert np.array_equal(imported.measurements(INF, kind="haadf"), s["haadf"])
    assert np.array_equal(imported.array("truth/numbers"), [79] * 6)
    m = imported.meta
    assert m["grid_shape"] == [32, 32, 32] and m["voxel_size_A"] == VOXEL
    assert m["origin_xyz_A"] == [0.0, 0.0, VOXEL / 2] and m["scan_step_A"] == [STEP, STEP]
    assert m["adf_mrad"] == [30.0, 64.0] and m["adf_defocus_A"] == ADF_DEFOCUS
    prov = dict(imported.group.attrs["provenance"])
    assert {"abtem", "numpy", "ptychobench"} <= set(prov["versions"]) and prov["time_utc"]
    sources = prov["import"]["sources"]
    assert set(sources) >= {"measurements.diffraction", "measurements.haadf", "truth.potential"}
    assert all(len(v["file_blake2b"]) == 32 for v in sources.values())
    assert "reciprocal_sampling" in prov["import"]["yaml"]
    # the CLI finds the same content again and prints key and path
    main([str(root / "series.yaml"), "--cache-dir", str(imported.path.parent)])
    out = capsys.readouterr().out
    assert "already in the cache" in out and f"key: {imported.key}" in out
    assert f"path: {imported.path}" in out
    main(["--schema"])
    assert "grid:" in capsys.readouterr().out


def test_from_dataset_gives_the_cell_grid(imported, external):
    _, _, s, _ = external
    data = from_dataset(imported, INF, "cpu")
    assert data.volume_shape == (32, 32, 32) and data.voxel_size == VOXEL
    assert math.isclose(imported.meta["reciprocal_sampling_invA"][0] * 32 * VOXEL, 1.0)
    k = s["diffraction"].shape[-1]  # 42 pixels at 30 mrad; cropped to 32 about k // 2
    a = k // 2 - 16
    want = s["diffraction"][..., a:a + 32, a:a + 32].reshape(2, 64, 32, 32)
    assert tuple(data.patterns.shape) == (2, 64, 32, 32)
    assert np.array_equal(data.patterns.numpy(), want)
    assert np.allclose(data.positions.numpy(), np.broadcast_to(s["raster"], (2, 64, 2)))
    assert np.allclose(data.euler.numpy(), np.deg2rad([[0, -45, 0], [0, 45, 0]]))
    assert data.aberrations == {"C10": -DEFOCUS} and data.semiangle == SEMIANGLE * 1e-3
    assert data.electrons_per_position == math.inf
    assert Truth(imported).has("truth/potential") and not Truth(imported).has("geometry/shifts")


def test_imported_and_native_series_agree(imported, external, tmp_path):
    _, _, _, atoms = external
    cfg = tiny_config(microscope={"defocus": DEFOCUS}, detector={"adf_defocus": ADF_DEFOCUS},
                      tilts={"range": list(THETAS)})
    validate_simulation(simulation_config(cfg), np.diag(atoms.cell.array))
    native = load_dataset(cfg, tmp_path, progress=False, atoms=atoms)
    a, b = from_dataset(imported, INF, "cpu"), from_dataset(native, INF, "cpu")
    assert a.volume_shape == b.volume_shape and a.voxel_size == b.voxel_size
    assert (a.energy, a.semiangle, a.aberrations) == (b.energy, b.semiangle, b.aberrations)
    for name in ("euler", "shifts", "positions", "haadf_positions"):
        assert np.allclose(getattr(a, name).numpy(), getattr(b, name).numpy(), atol=1e-9), name
    # same abTEM calls on the same atoms, phonon seeds and positions: equal to float32 rounding
    for name in ("patterns", "haadf"):
        x, y = getattr(a, name).numpy(), getattr(b, name).numpy()
        print(f"{name} imported vs native: max |diff| / max = "
              f"{np.abs(x - y).max() / np.abs(y).max():.1e}")
        assert np.abs(x - y).max() <= 1e-6 * np.abs(y).max(), name
    assert np.allclose(imported.array("truth/potential"), native.array("truth/potential"),
                       rtol=1e-6, atol=1e-6 * native.array("truth/potential").max())
    variant, params = variant_params({"name": "resire", "iterations": 20})
    va = variant.reconstruct(a, params).estimates()["volume"]
    vb = VARIANTS["resire"].reconstruct(b, params).estimates()["volume"]
    rel = np.linalg.norm(va - vb) / np.linalg.norm(vb)
    corr = np.corrcoef(va.ravel(), vb.ravel())[0, 1]
    print(f"RESIRE imported vs native: rel. L2 diff {rel:.2e}, correlation {corr:.9f}")
    assert rel < 1e-5 and corr > 0.999999


def _refusal(root, meta: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        import_series(write_yaml(root, meta, "bad.yaml"), root / "cache")
    return info.value


@pytest.mark.parametrize(("edit", "key"), [
    (lambda m: m.update(colour="red"), "colour"),
    (lambda m: m["microscope"].update(voltage=300), "microscope.voltage"),
    (lambda m: m["microscope"].update(energy=-3), "microscope.energy"),
    (lambda m: m["microscope"].update(aberrations={"C10": 5.0}), "microscope.aberrations.C10"),
    (lambda m: m["tilts"].update(angles=[-45.0, 0.0, 45.0]), "measurements.diffraction"),
    (lambda m: m["grid"].update(voxel_size=0.3), "grid.voxel_size"),
    (lambda m: m["grid"].update(shape=[32, 40, 40]), "grid.shape"),
    (lambda m: m["scan"].update(origin=[5.0, 0.0]), "scan.positions"),
    (lambda m: m["scan"].update(start=None, positions=[[0.0, 0.0]] * 3), "scan.positions"),
    (lambda m: m["detector"].update(adf_outer=500.0), "detector.adf_outer"),
    (lambda m: m["detector"].update(adf_inner=80.0), "detector.adf_inner"),
    (lambda m: m["detector"].update(angular_sampling=1.5), "detector.angular_sampling"),
    (lambda m: m["measurements"].update(haadf="series.npz:nope"), "measurements.haadf"),
    (lambda m: m["truth"].update(numbers=["Au"] * 5), "truth.numbers"),
    (lambda m: m["truth"].update(potential_origin=[0.0, 0.0, 0.0]), "truth.potential_origin"),
])
def test_refusals_name_the_field(external, edit, key):
    root, meta, *_ = external
    bad = yaml.safe_load(yaml.safe_dump(meta))
    edit(bad)
    err = _refusal(root, bad)
    assert err.key == key, str(err)
    assert str(err).startswith(f"config key '{key}' = ")


def test_refusal_reasons(external, capsys):
    root, meta, *_ = external
    bad = yaml.safe_load(yaml.safe_dump(meta))
    bad["grid"]["voxel_size"] = 0.3
    msg = str(_refusal(root, bad))
    assert "1/(dk v) = 42.666667" in msg and "cell 1/dk = 12.8 Å" in msg
    assert "v = 0.3047619 or 0.29767442 Å" in msg  # the nearest voxels that fit
    np.save(root / "rect.npy", np.zeros((2, 8, 8, 42, 40), np.float32))
    bad = yaml.safe_load(yaml.safe_dump(meta))
    bad["measurements"]["diffraction"] = "rect.npy"
    assert "square patterns" in str(_refusal(root, bad))
    with pytest.raises(SystemExit) as info:  # the CLI: exit status 2, the reason on stderr
        main([str(root / "bad.yaml"), "--cache-dir", str(root / "cache")])
    assert info.value.code == 2 and "measurements.diffraction" in capsys.readouterr().err


def test_hdf5_and_zarr_inputs_load_the_same_arrays(external, imported):
    h5py = pytest.importorskip("h5py")
    root, meta, s, _ = external
    with h5py.File(root / "series.h5", "w") as f:
        f.create_dataset("/scan/patterns", data=s["diffraction"])
    group = zarr.open_group(store=str(root / "series.zarr"), mode="w")
    for name, value in (("adf", s["haadf"]), ("truth/potential", s["potential"])):
        group.create_array(name, shape=value.shape, dtype=value.dtype)[...] = value
    read = FileReader(root)
    assert np.array_equal(read("d", "series.h5:/scan/patterns"), read("d", "patterns.npy"))
    assert np.array_equal(read("h", "series.zarr:/adf"), read("h", "series.npz:adf"))
    other = yaml.safe_load(yaml.safe_dump(meta))
    other["measurements"] = {"diffraction": "series.h5:/scan/patterns", "haadf": "series.zarr:adf"}
    other["truth"]["potential"] = "series.zarr:/truth/potential"
    ds, written = import_series(write_yaml(root, other, "other.yaml"), imported.path.parent)
    assert ds.key == imported.key and not written  # the key is the content's digest


def test_counts_and_no_truth(external, tmp_path):
    """Counts are stored per incident electron; without truth only the grid is recorded and
    the truth scorers find nothing to score."""
    root, meta, s, _ = external
    counts = np.rint(s["haadf"] * 5000.0).astype(np.int32)
    np.savez(root / "counts.npz", adf=counts, pos=s["raster"] - 1.0)
    m = {k: v for k, v in yaml.safe_load(yaml.safe_dump(meta)).items() if k != "truth"}
    m["measurements"] = {"haadf": "counts.npz:adf", "haadf_electrons_per_position": 5000.0}
    m["scan"] = {"positions": "counts.npz:pos", "origin": [1.0, 1.0]}  # [P, 2], step estimated
    m["grid"]["shape"] = [32, 32, 32]
    del m["detector"]["reciprocal_sampling"]
    ds, _ = import_series(write_yaml(root, m, "counts.yaml"), tmp_path)
    assert not ds.has_diffraction and not ds.has("truth/potential")
    assert not ds.has("geometry/euler_deg") and ds.n_tilts == 2
    assert ds.meta["grid_shape"] == [32, 32, 32] and np.allclose(ds.meta["scan_step_A"], STEP)
    assert np.allclose(ds.array("geometry/positions_nominal"), s["raster"])
    assert ds.meta["measured_electrons_per_position"] == {"haadf": 5000.0}
    got = ds.measurements(INF, kind="haadf", per_electron=True)
    assert np.allclose(got, counts / 5000.0, rtol=1e-6)
    assert ds.measurements(NoiseConfig(dose=1e3), kind="haadf").shape == (2, 8, 8)
    assert not any(Truth(ds).has(n) for n in ("truth/positions", "truth/potential"))
    assert isinstance(Dataset(ds.path), Dataset)
    data = from_dataset(ds, INF, "cpu")  # the grid from meta["grid_shape"]
    assert data.volume_shape == (32, 32, 32) and data.patterns is None
    variant, params = variant_params({"name": "resire", "iterations": 2})
    assert variant.reconstruct(data, params).estimates()["volume"].shape == (32, 32, 32)


def test_the_app_reconstructs_and_rescores_an_imported_dataset(imported, tmp_path):
    """``ptychobench dataset=<key> algorithm=...`` runs a variant on the imported series and
    scores it against the truth it carries; ``ptychobench-rescore`` re-scores that job."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from experiments.rescore import rescore_job

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PTYCHOBENCH_CACHE": str(imported.path.parent), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.cli", "experiment=none", "progress=false",
           f"dataset={imported.key}", "algorithm=resire", "algorithm.iterations=20",
           f"hydra.run.dir={run}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "ok" and record["dataset_key"] == imported.key
    assert record["n_true"] == len(imported.array("truth/positions")) and record["tp"] > 0
    again = rescore_job(run, {"r_match": 1e-3})
    assert again["tp"] == 0 and again["dataset_key"] == imported.key
    bad = subprocess.run([*cmd[:-1], f"hydra.run.dir={tmp_path / 'bad'}", "algorithm=mset"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=root)
    has_patterns = imported.has_diffraction
    assert (bad.returncode == 0) == has_patterns
