"""Paper 001's particle builders: sizes, lattices, core/shell split, displacements."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from simulate.errors import ConfigError
from simulate.models import build_model
from simulate.models.nanoparticles import BaOConfig, CuAuConfig


def _nn(atoms, cutoff: float = 3.5) -> np.ndarray:
    i, d = neighbor_list("id", atoms, cutoff)
    return np.array([d[i == k].min() for k in range(len(atoms))])


def test_atom_count_scales_with_volume():
    n = [len(build_model(CuAuConfig(diameter=d, cell=51.2, shape="sphere"))) for d in (20, 30)]
    assert n[1] / n[0] == pytest.approx(1.5**3, rel=0.12)
    # fcc density 4/a³ times the sphere volume
    assert n[1] == pytest.approx(4 / 3.78**3 * np.pi / 6 * 30**3, rel=0.1)


def test_paper_size_cuau_is_about_1600_atoms():
    atoms = build_model(CuAuConfig())
    assert 1300 < len(atoms) < 2000  # paper 001: 1602 atoms for "about 4 nm"


@pytest.mark.parametrize("shape", ["random", "sphere", "faceted"])
def test_fcc_nearest_neighbours_match_lattice(shape):
    atoms = build_model(CuAuConfig(diameter=20, cell=32, shape=shape, displacement_rmsd=0.0))
    assert np.allclose(_nn(atoms), 3.78 / np.sqrt(2), atol=1e-9)


def test_bao_rocksalt_neighbours_and_stoichiometry():
    atoms = build_model(BaOConfig(diameter=22, cell=32, displacement_rmsd=0.0))
    i, j, d = neighbor_list("ijd", atoms, 3.0)
    z = atoms.numbers
    assert np.allclose(d, 5.54 / 2, atol=1e-9)  # only Ba-O pairs at a/2
    assert np.all(z[i] != z[j])
    n_ba, n_o = (z == 56).sum(), (z == 8).sum()
    assert abs(n_ba - n_o) / len(atoms) < 0.1


def test_core_shell_split():
    atoms = build_model(CuAuConfig(diameter=30, cell=51.2, core_fraction=0.36))
    sym = np.array(atoms.get_chemical_symbols())
    assert (sym == "Cu").sum() == round(0.36 * len(atoms))
    r = np.linalg.norm(atoms.positions - atoms.cell.diagonal() / 2, axis=1)
    assert r[sym == "Cu"].max() < np.percentile(r[sym == "Au"], 75)
    assert r[sym == "Cu"].mean() < r[sym == "Au"].mean() - 3.0
    assert np.array_equal(atoms.arrays["region"], (sym == "Au").astype(int))


def test_displacement_rmsd_is_as_requested():
    base = build_model(CuAuConfig(diameter=24, cell=40, displacement_rmsd=0.0, seed=4))
    moved = build_model(CuAuConfig(diameter=24, cell=40, displacement_rmsd=0.2, seed=4))
    d = moved.positions - base.positions
    assert np.sqrt(np.mean(np.sum(d**2, axis=1))) == pytest.approx(0.2, rel=1e-9)


def test_minimum_distance_and_centring():
    atoms = build_model(CuAuConfig(diameter=30, cell=51.2))
    assert _nn(atoms).min() > 1.5
    assert np.allclose(atoms.positions.mean(0), 25.6, atol=1.5)


def test_seed_reproduces_and_differs():
    a, b = (build_model(CuAuConfig(diameter=20, cell=32, seed=s)) for s in (1, 1))
    c = build_model(CuAuConfig(diameter=20, cell=32, seed=2))
    assert np.array_equal(a.positions, b.positions)
    assert len(a) != len(c) or not np.allclose(a.positions, c.positions)


def test_particle_too_large_for_cell_is_refused():
    with pytest.raises(ConfigError, match="sample.diameter"):
        build_model(CuAuConfig(diameter=30, cell=32))


def test_unknown_shape_and_key_are_refused():
    with pytest.raises(ConfigError, match="sample.shape"):
        build_model(CuAuConfig(shape="cube"))
    with pytest.raises(ConfigError, match="sample.radius"):
        build_model({"name": "cuau", "radius": 3.0})
    with pytest.raises(ConfigError, match="sample.name"):
        build_model({"name": "graphene"})
