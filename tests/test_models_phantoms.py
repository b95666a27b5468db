"""The phantoms of papers 000, 002, 003 and 004: lattices, species, distances, symmetry, MD
thermal motion, mistilt geometry, truth stored with the datasets (presets:
test_phantom_presets.py)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.spatial import cKDTree

from simulate import config as C
from simulate.errors import ConfigError
from simulate.geometry import euler_matrix
from simulate.models import build_model
from simulate.models.amorphous import AmorphousSiConfig
from simulate.models.coreshell import AL2O3_MASS, AVOGADRO, PtAl2O3Config
from simulate.models.decahedron import DecahedronConfig
from simulate.models.grain_boundary import CRYSTAL_TO_LAB, SIGMA9_ANGLE, SiSigma9Config
from simulate.models.slabs import CuPairConfig, SrTiO3Config, SrTiO3GradientConfig, tilt_profile
from simulate.pipeline import load_dataset
from simulate.tiltseries import truth_potential

A_PT, A_STO, A_CU, A_SI = 3.92, 3.905, 3.615, 5.431


def _pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return neighbor_list("ijd", atoms, cutoff)


def _rot_z(deg: float) -> np.ndarray:
    return euler_matrix(0.0, 0.0, deg)


def _maps_onto_itself(pos: np.ndarray, transformed: np.ndarray) -> float:
    """Largest distance (Å) from a transformed atom to the nearest original atom."""
    return float(cKDTree(pos).query(transformed)[0].max())


# --- Pt@Al2O3 (paper 000) ------------------------------------------------------------------


def test_ptal2o3_core_is_an_fcc_pt_cube():
    atoms = build_model(PtAl2O3Config(core_edge=4 * A_PT, shell_thickness=3.0, cell=51.2))
    core = atoms.arrays["region"] == 0
    assert set(atoms.numbers[core]) == {78} and 78 not in set(atoms.numbers[~core])
    # fcc with an atom at the centre: 9 half-lattice steps per edge, half the sites occupied
    assert core.sum() == (9**3 + 1) // 2
    pt = atoms[core]
    i, d = neighbor_list("id", pt, 3.0)
    assert np.allclose(d, A_PT / np.sqrt(2), atol=1e-9)
    assert np.bincount(i).max() == 12
    rel = pt.positions - pt.positions.mean(axis=0)
    assert np.abs(rel).max() == pytest.approx(2 * A_PT, abs=1e-9)  # {100} facets at ±2a


@pytest.mark.parametrize("shell", ["corundum", "amorphous"])
def test_ptal2o3_no_atoms_closer_than_min_distance(shell):
    atoms = build_model(PtAl2O3Config(shell=shell, core_edge=7.84, shell_thickness=4.0, cell=40))
    _, _, d = _pairs(atoms, 2.5)
    assert d.min() >= 1.8
    shell_z = set(atoms.numbers[atoms.arrays["region"] == 1])
    assert shell_z == {8, 13}
    rel = np.abs(atoms.positions - atoms.cell.diagonal() / 2)
    sh = atoms.arrays["region"] == 1
    assert np.all(rel[sh].max(axis=1) > 3.92 - 1e-6)  # outside the core cube
    assert np.all(rel[sh].max(axis=1) <= 3.92 + 4.0 + 1e-6)  # inside the outer cube


def test_corundum_shell_has_corundum_bonds_and_stoichiometry():
    atoms = build_model(PtAl2O3Config(core_edge=7.84, shell_thickness=8.0, cell=48.0))
    z, sh = atoms.numbers, atoms.arrays["region"] == 1
    assert (z[sh] == 13).sum() / (z[sh] == 8).sum() == pytest.approx(2 / 3, rel=0.05)
    # Al in the shell bulk (its O neighbours >= 1.8 Å from the Pt facets at 3.92 Å): six O,
    # three at 1.855 Å and three at 1.971 Å, as in corundum
    rel = np.abs(atoms.positions - atoms.cell.diagonal() / 2).max(axis=1)
    mid = sh & (z == 13) & (rel > 3.92 + 1.8 + 1.971) & (rel < 3.92 + 8.0 - 1.971)
    assert mid.sum() > 50
    i, j, d = _pairs(atoms, 2.2)
    for k in np.flatnonzero(mid):
        dk = np.sort(d[(i == k) & (z[j] == 8)])
        assert np.allclose(dk, [1.855] * 3 + [1.971] * 3, atol=2e-3)


def test_amorphous_shell_density_and_stoichiometry():
    cfg = PtAl2O3Config(shell="amorphous", core_edge=7.84, shell_thickness=5.0, cell=40.0)
    atoms = build_model(cfg)
    z = atoms.numbers[atoms.arrays["region"] == 1]
    n_al, n_o = (z == 13).sum(), (z == 8).sum()
    assert abs(3 * n_al - 2 * n_o) <= 3
    volume = (7.84 + 10.0) ** 3 - 7.84**3  # Å³
    density = (n_al + n_o) / 5 * AL2O3_MASS / AVOGADRO / (volume * 1e-24)
    assert density == pytest.approx(3.0, rel=0.01)


# --- SrTiO3 slabs and Cu pair (paper 002) ---------------------------------------------------


def test_srtio3_lattice_and_stoichiometry():
    atoms = build_model(SrTiO3Config(nx=3, ny=4, thickness=5 * A_STO, cell=30.0, tilt_x=0.0))
    counts = np.bincount(atoms.numbers)
    assert counts[38] == counts[22] == 3 * 4 * 5 and counts[8] == 3 * counts[38]
    i, j, d = _pairs(atoms, 4.0)
    z = atoms.numbers
    assert np.allclose(d[(z[i] == 38) & (z[j] == 38)], A_STO)  # Sr-Sr along the cube edges
    assert np.allclose(d[(z[i] == 22) & (z[j] == 8)].min(), A_STO / 2)  # Ti-O octahedra
    assert np.allclose(np.diag(atoms.cell.array)[:2], [3 * A_STO, 4 * A_STO])


def _column_slopes(atoms: Atoms, ref: np.ndarray) -> np.ndarray:
    """Per atom: lateral displacement from ``ref`` (minimum image) divided by depth from the
    slab's middle, ``[N, 2]``; atoms at mid-depth get NaN."""
    cell = np.diag(atoms.cell.array)
    d = atoms.positions[:, :2] - ref[:, :2]
    d -= np.round(d / cell[:2]) * cell[:2]
    dz = ref[:, 2] - cell[2] / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(dz)[:, None] > 0.1, d / dz[:, None], np.nan)


def test_mistilted_slab_planes_shift_by_tan_theta_times_depth():
    flat = build_model(SrTiO3Config(nx=3, ny=3, thickness=8 * A_STO, cell=40.0, tilt_x=0.0))
    tilted = build_model(
        SrTiO3Config(nx=3, ny=3, thickness=8 * A_STO, cell=40.0, tilt_x=12.0, tilt_y=-5.0)
    )
    slopes = _column_slopes(tilted, flat.positions)
    ok = ~np.isnan(slopes[:, 0])
    assert np.allclose(slopes[ok], np.tan([12e-3, -5e-3]), atol=1e-9)
    # depth is unchanged (a shear of the columns): planes stay a/2 apart
    assert np.allclose(
        np.unique(np.round(tilted.positions[:, 2], 6)), np.unique(np.round(flat.positions[:, 2], 6))
    )
    assert np.allclose(tilted.info["truth_tilt_mrad"], [12.0, -5.0])


def test_mistilt_shifts_the_truth_potential_planes():
    """The shift is in the simulated potential too: the phase of the 2/a Fourier component
    of each atomic plane's potential moves by tan θ per Å of depth."""
    cfg = SrTiO3Config(nx=3, ny=3, thickness=8 * A_STO, cell=10 * A_STO, tilt_x=50.0)
    atoms = build_model(cfg)
    sim = C.SimulationConfig(sample=cfg, truth=C.TruthConfig(voxel_size=A_STO / 10))
    pot, origin = truth_potential(atoms, sim)
    v = A_STO / 10
    profile = pot.mean(axis=2)  # [nz, nx]
    planes = np.flatnonzero(profile.sum(axis=1) > 0.5 * profile.sum(axis=1).max())
    coeff = np.fft.fft(profile[planes], axis=1)[:, 2 * cfg.nx]  # frequency 2/a
    shift = np.unwrap(-np.angle(coeff)) / (2 * np.pi * 2 / A_STO)
    depth = origin[2] + planes * v
    slope = np.polyfit(depth, shift, 1)[0]
    assert slope == pytest.approx(np.tan(50e-3), rel=0.02)


def test_tilt_gradient_slab_follows_its_profile():
    cfg = SrTiO3GradientConfig(nx=6, ny=2, thickness=6 * A_STO, cell=30.0, vacuum_x=A_STO)
    atoms = build_model(cfg)
    flat = build_model(SrTiO3GradientConfig(**{**cfg.__dict__, "tilt_x_end": 0.0}))
    slopes = _column_slopes(atoms, flat.positions)
    ok = ~np.isnan(slopes[:, 0])
    expect = np.tan(1e-3 * tilt_profile(cfg, flat.positions[:, 0])[:, 0])
    assert np.allclose(slopes[ok, 0], expect[ok], atol=1e-9)
    assert np.allclose(slopes[ok, 1], 0.0)
    x = flat.positions[:, 0]
    first, last = np.isclose(x, x.min()), np.isclose(x, x.max())
    assert np.allclose(slopes[ok & first, 0], 0.0) and np.allclose(
        slopes[ok & last, 0], np.tan(10e-3)
    )
    # the per-position truth map: θx linear in x over the crystal, NaN over the vacuum
    tmap, step = atoms.info["truth_tilt_map"], atoms.info["truth_tilt_map_step"]
    xs = np.arange(tmap.shape[0]) * step[0]
    expect = np.broadcast_to(tilt_profile(cfg, xs)[:, None, :], tmap.shape)
    known = ~np.isnan(tmap)
    assert np.allclose(tmap[known], expect[known], atol=1e-12)
    inside = (xs > cfg.vacuum_x) & (xs < cfg.vacuum_x + (cfg.nx - 1) * A_STO)
    assert known[inside].all() and np.isnan(tmap[xs < cfg.vacuum_x - 1.6]).all()
    assert np.nanmax(tmap[..., 0]) == pytest.approx(10.0, abs=0.2)


def _cu_pair() -> tuple[CuPairConfig, Atoms]:
    cfg = CuPairConfig(
        cell=40.0, thickness_1=18.0, width_1=12.0, thickness_2=8.0, width_2=9.0, gap=4.0
    )
    return cfg, build_model(cfg)


def test_cu_pair_lattice_thickness_and_opposite_tilts():
    cfg, atoms = _cu_pair()
    _, _, d = _pairs(atoms, 2.7)
    assert np.allclose(d, A_CU / np.sqrt(2), atol=1e-9)
    for k, (tilt, thick) in enumerate(((27.93, 18.0), (-13.96, 8.0))):
        part = atoms.positions[atoms.arrays["region"] == k]
        part = part - part.mean(axis=0)
        # undo the tilt about x: the columns are then parallel to the beam ([001])
        back = part @ euler_matrix(np.degrees(tilt * 1e-3), 0.0, 0.0).T
        cols = np.unique(np.round(back[:, :2] / (A_CU / 2), 6), axis=0)
        assert np.allclose(cols, np.round(cols))  # on the [001] column grid
        assert np.ptp(back[:, 2]) == pytest.approx(thick, abs=A_CU / 2)
        # each column drifts in y by tan θ per Å of depth
        _, col = np.unique(np.round(back[:, :2], 6), axis=0, return_inverse=True)
        for c in np.flatnonzero(np.bincount(col.ravel()) >= 3)[:20]:
            sel = col.ravel() == c
            slope = np.polyfit(part[sel, 2], part[sel, 1], 1)[0]
            assert slope == pytest.approx(np.tan(tilt * 1e-3), rel=1e-9)
            assert np.ptp(part[sel, 0]) < 1e-9
    assert atoms.info["truth_tilt_regions"][:, 1].tolist() == [27.93, -13.96]


def test_tilt_map_is_stored_per_scan_position(tmp_path):
    cfg, atoms = _cu_pair()
    sim = {
        "sample": {**cfg.__dict__},
        "microscope": {"energy": 300e3, "semiangle": 22.0},
        "potential": {"sampling": 0.2, "slice_thickness": 4.0},
        "scan": {"step": 2.5},
        "detector": {"max_angle": 20.0},
        "tilts": {"angles": [0.0], "shift_max": 1.0, "seed": 3},
        "phonons": {"num_configs": 0},
        "truth": {"voxel_size": 0.5},
    }
    ds = load_dataset(sim, tmp_path)
    tilt = ds.array("truth/truth_tilt_at_positions")[0]
    pos = ds.array("geometry/positions")[0] - ds.array("geometry/shifts")[0]
    assert tilt.shape == (len(pos), 2)
    tree = [cKDTree(atoms.positions[atoms.arrays["region"] == k, :2]) for k in (0, 1)]
    near = [t.query(pos)[0] < 1.2 for t in tree]  # over a particle's projected columns
    far = (tree[0].query(pos)[0] > 1.8) & (tree[1].query(pos)[0] > 1.8)
    assert near[0].sum() > 5 and near[1].sum() > 5 and far.sum() > 5
    assert np.allclose(tilt[near[0]], [0.0, 27.93]) and np.allclose(tilt[near[1]], [0.0, -13.96])
    assert np.isnan(tilt[far]).all()


# --- Σ9 grain boundary in Si with MD (paper 003) --------------------------------------------

MD = {"ny": 1, "cell": 12.0, "n_equilibration": 300, "n_snapshots": 20, "snapshot_interval": 25}


def _periodic_slab(atoms: Atoms, positions: np.ndarray, n_layers: int = 4) -> Atoms:
    """The slab in its MD cell (periodic along z as in the MD), for coordination checks."""
    lz = n_layers * A_SI / (2 * np.sqrt(2))
    cell = [atoms.cell[0, 0], atoms.cell[1, 1], lz]
    return Atoms(atoms.numbers, positions=positions, cell=cell, pbc=True)


def test_sigma9_bicrystal_density_coordination_and_misorientation():
    atoms = build_model(SiSigma9Config(ny=1, cell=12.0, n_snapshots=0))
    slab = _periodic_slab(atoms, atoms.positions)
    assert len(atoms) == round(8 * slab.get_volume() / A_SI**3)  # no atom lost at the boundary
    i, j, dvec = neighbor_list("ijD", slab, 2.75)
    assert np.all(np.bincount(i, minlength=len(slab)) == 4)  # fully four-coordinated
    d = np.linalg.norm(dvec, axis=1)
    assert np.median(d) == pytest.approx(A_SI * np.sqrt(3) / 4, abs=0.01)
    # bonds deep in each grain are <111> of a diamond lattice rotated by -/+ 19.47° about z
    xb = atoms.info["truth_boundary_x"]
    x = atoms.positions[:, 0]
    deep = np.min(np.abs(x[:, None] - xb[None]), axis=1) > 4.0
    angles = []
    for grain in (0, 1):
        sel = deep[i] & (atoms.arrays["region"][i] == grain)
        assert sel.sum() > 20
        # ideal bond of the unrotated crystal nearest to each measured one, then the best
        # rotation about z taking the ideal bonds to the measured ones
        sign = 2 * grain - 1
        crystal = dvec[sel] @ _rot_z(sign * SIGMA9_ANGLE) @ CRYSTAL_TO_LAB
        ideal = np.sign(crystal) * A_SI / 4 @ CRYSTAL_TO_LAB.T  # lab frame, unrotated
        p, q = ideal[:, :2], dvec[sel, :2]
        cross = np.sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0])
        angles.append(np.degrees(np.arctan2(cross, np.sum(p * q))))
        assert np.abs(np.abs(crystal) - A_SI / 4).mean() < 0.03  # elastic distortion only
    assert angles[0] == pytest.approx(-SIGMA9_ANGLE, abs=0.3)
    assert angles[1] == pytest.approx(SIGMA9_ANGLE, abs=0.3)
    assert angles[1] - angles[0] == pytest.approx(38.94, abs=0.3)  # Σ9 misorientation


def test_sigma9_md_thermal_motion_matches_debye_and_boundary_stays():
    atoms = build_model(SiSigma9Config(**MD))
    static = build_model(SiSigma9Config(**{**MD, "n_snapshots": 0}))
    snaps = atoms.info["snapshots"]
    cell = np.diag(atoms.cell.array)
    u = snaps - atoms.positions[None]
    u[..., :2] -= np.round(u[..., :2] / cell[:2]) * cell[:2]
    s = len(snaps)
    msd = (u**2).sum(axis=-1).mean(axis=0) / 3 * s / (s - 1)  # per atom, per direction, Å²
    # classical Debye: <u_x²> = 3 ħ² T / (m k_B Θ_D²), Si Θ_D = 645 K, m = 28.0855 u
    hbar, kb, amu = 1.054571817e-34, 1.380649e-23, 1.66053906660e-27
    debye = 3 * hbar**2 * 300.0 / (28.0855 * amu * kb * 645.0**2) * 1e20
    assert 0.5 < msd.mean() / debye < 2.0
    assert np.mean((msd > debye / 2) & (msd < 2 * debye)) > 0.9
    # the boundary is intact: mean positions close to the relaxed ones, still 4-coordinated
    dmean = atoms.positions - static.positions
    dmean[:, :2] -= np.round(dmean[:, :2] / cell[:2]) * cell[:2]
    assert np.linalg.norm(dmean, axis=1).max() < 0.3
    i = neighbor_list("i", _periodic_slab(atoms, atoms.positions), 2.75)
    assert np.all(np.bincount(i, minlength=len(atoms)) == 4)


def test_sigma9_commensurate_voxel_strain_is_small_and_refused_when_large():
    atoms = build_model(SiSigma9Config(ny=1, cell=12.0, n_snapshots=0, commensurate_voxel=0.3974))
    n = np.diag(atoms.cell.array) / 0.3974
    assert np.allclose(n, np.rint(n), atol=1e-9)
    assert np.abs(atoms.info["truth_strain"]).max() < 5e-4
    with pytest.raises(ConfigError, match="sample.commensurate_voxel"):
        build_model(SiSigma9Config(ny=1, cell=12.0, n_snapshots=0, commensurate_voxel=0.4))


def _sigma9_sim(**sample) -> dict:
    base = dict(name="si_sigma9", ny=1, cell=12.0, n_equilibration=20, n_snapshots=2)
    base.update(snapshot_interval=20, commensurate_voxel=0.3974)
    return {
        "sample": {**base, **sample},
        "microscope": {"energy": 60e3, "semiangle": 30.0},
        "potential": {"sampling": 0.1, "slice_thickness": 2.0},
        "scan": {"step": 1.6, "start": [14.0, 4.0], "end": [17.3, 7.3]},
        "detector": {"max_angle": 40.0},
        "tilts": {"angles": [0.0]},
        "phonons": {"num_configs": 0},
        "truth": {"voxel_size": 0.3974},
    }


def test_sigma9_ensemble_and_static_snapshot_datasets(tmp_path):
    ens = load_dataset(_sigma9_sim(), tmp_path)
    stat = [load_dataset(_sigma9_sim(static_snapshot=k), tmp_path) for k in (0, 1)]
    snaps = ens.array("truth/snapshots")
    assert snaps.shape == (2, 144, 3) and ens.meta["num_configurations"] == 2
    for k, ds in enumerate(stat):
        assert np.array_equal(ds.array("truth/truth_snapshots"), snaps)  # all kept as truth
        assert np.array_equal(ds.array("truth/positions"), snaps[k])  # simulated alone
        assert ds.meta["num_configurations"] == 0
    # the ensemble dataset is the incoherent average of its snapshots' datasets (TDS)
    data = [d.array("measurements/diffraction") for d in (ens, *stat)]
    assert np.abs(data[0] - (data[1] + data[2]) / 2).max() < 1e-5 * data[0].max()
    assert np.abs(data[1] - data[2]).max() > 1e-3 * data[0].max()


# --- Pt decahedron and amorphous Si (paper 004) ---------------------------------------------


def _twin_plane_azimuths(pos: np.ndarray) -> np.ndarray:
    """Azimuths (°, mod 360) of the five half-planes holding the most atoms off the axis."""
    r = np.hypot(pos[:, 0], pos[:, 1])
    phi = np.degrees(np.arctan2(pos[r > 0.5, 1], pos[r > 0.5, 0])) % 360
    vals, counts = np.unique(np.round(phi, 4), return_counts=True)
    return np.sort(vals[np.argsort(counts)[-5:]])


@pytest.mark.parametrize("pqr", [(2, 2, 1), (6, 5, 1)])
def test_decahedron_has_fivefold_twin_geometry(pqr):
    atoms = build_model(DecahedronConfig(p=pqr[0], q=pqr[1], r=pqr[2], n_atoms=0, cell=40.0))
    pos = atoms.positions - atoms.positions.mean(axis=0)
    assert _maps_onto_itself(pos, pos @ _rot_z(72.0).T) < 1e-6
    assert _maps_onto_itself(pos, pos @ _rot_z(36.0).T) > 0.5  # five-fold, not ten-fold
    # five twin planes 72° apart, each a mirror of the whole particle
    az = _twin_plane_azimuths(pos)
    assert np.allclose(np.diff(az), 72.0, atol=1e-3)
    for a in az:
        n = np.array([-np.sin(np.radians(a)), np.cos(np.radians(a)), 0.0])
        mirrored = pos - 2 * np.outer(pos @ n, n)
        assert _maps_onto_itself(pos, mirrored) < 1e-6
    # fcc segments: nearest neighbours at a/√2 up to the Ino strain (at most 2 %)
    i, d = neighbor_list("id", atoms, 3.2)
    assert np.all((d > 0.99 * A_PT / np.sqrt(2)) & (d < 1.02 * A_PT / np.sqrt(2)))
    assert np.bincount(i).max() == 12


def test_decahedron_twin_planes_are_close_packed():
    atoms = build_model(DecahedronConfig(p=6, q=5, r=1, n_atoms=0, cell=40.0))
    pos = atoms.positions - atoms.positions.mean(axis=0)
    a = np.radians(_twin_plane_azimuths(pos)[0])
    n = np.array([-np.sin(a), np.cos(a), 0.0])
    on = np.abs(pos @ n) < 1e-6
    sheet = Atoms(["Pt"] * on.sum(), positions=pos[on])
    i = neighbor_list("i", sheet, 3.0)
    assert np.bincount(i).max() == 6  # a {111} (triangular) sheet


def test_decahedron_paper_size_and_rotation():
    atoms = build_model(DecahedronConfig(euler_phi=10.0, euler_psi=5.0))
    assert 25_700 < len(atoms) <= 25_790  # paper 004: 25,790 (whole shells: 25,782)
    axis = atoms.info["truth_fivefold_axis"]
    assert np.allclose(axis, euler_matrix(10.0, 0.0, 5.0) @ [0, 0, 1])
    pos = atoms.positions - atoms.positions.mean(axis=0)
    k = np.cross(axis, [0.0, 0.0, 1.0])
    k /= np.linalg.norm(k)
    ang = np.arccos(axis[2])
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    back = np.eye(3) + np.sin(ang) * kx + (1 - np.cos(ang)) * kx @ kx  # axis -> z
    p = pos @ back.T
    assert _maps_onto_itself(p, p @ _rot_z(72.0).T) < 1e-6
    assert np.ptp(pos, axis=0).max() < 108.0 - 4.0


def test_amorphous_si_distances_density_and_no_order():
    atoms = build_model(AmorphousSiConfig(n_atoms=1000, cell=38.4, seed=2))
    assert len(atoms) == 1000 and set(atoms.numbers) == {14}
    i, d = neighbor_list("id", atoms, 3.0)
    nn = np.array([d[i == k].min() for k in range(len(atoms))])
    assert nn.min() >= 2.32 and nn.max() <= 2.53  # paper 004's constraint
    assert d.min() >= 2.32
    pos = atoms.positions - atoms.positions.mean(axis=0)
    radius = np.sqrt(5 / 3 * np.mean(np.sum(pos**2, axis=1)))  # sphere of equal gyration
    assert 1000 / (4 / 3 * np.pi * radius**3) == pytest.approx(0.063, rel=0.1)
    # no Bragg peak: |Σ exp(iq·r)|² / N stays far below N for |q| in 1.5-4 Å⁻¹
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((600, 3))
    q = dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * rng.uniform(1.5, 4.0, (600, 1))
    s = np.abs(np.exp(1j * pos @ q.T).sum(axis=0)) ** 2 / len(pos)
    assert s.max() < 0.05 * len(pos)


@pytest.mark.slow
def test_amorphous_si_paper_size():
    atoms = build_model(AmorphousSiConfig())
    assert len(atoms) == 25_000
    pos = atoms.positions - atoms.positions.mean(axis=0)
    diameter = 2 * np.sqrt(5 / 3 * np.mean(np.sum(pos**2, axis=1)))
    assert diameter == pytest.approx(90.0, rel=0.1)  # paper 004: 9 nm
