"""Paper 004's crystalline phantom: a Pt five-fold twinned (Ino/Marks) decahedron.

Built with :func:`ase.cluster.Decahedron`: five fcc tetrahedral segments share the five-fold
axis (z before rotation) and meet at five {111} twin planes through the axis, 72° apart. Five
ideal tetrahedra would span 5 × 70.53° = 352.6°; ASE closes the 7.35° gap by straining each
segment uniformly (the Ino model), so the twin planes are exactly 72° apart, the bond lengths
along the axis are a/√2 and those across a segment 1.8 % longer. ``p`` sets the (100) facets
perpendicular to the axis, ``q`` those parallel to it, ``r`` the depth of the Marks
re-entrant notches (ASE's definitions).

Paper 004's model has 25,790 atoms; no (p, q, r) gives that number exactly (the nearest are
25,759 and 25,837), so the default is the Marks decahedron (18, 16, 2) of 25,892 atoms trimmed
to at most ``n_atoms`` atoms by removing whole shells of equal distance from its centre, from
the outside in (``n_atoms = 0`` keeps all). A shell is a union of symmetry orbits, so the trimmed
particle keeps the D5h symmetry (five-fold axis, five twin mirror planes); for 25,790 this gives
25,782 atoms (the next shell boundary, 25,802, would exceed it). The paper rotated the model
off low-index zone axes; ``euler_*`` (degrees, R = Rz(ψ) Ry(θ) Rx(φ)) do that about the centre.
Truth: ``truth_fivefold_axis`` = the unit vector of the five-fold axis after rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.cluster import Decahedron

from simulate.errors import ConfigError
from simulate.geometry import euler_matrix
from simulate.models.common import centred_in_cube
from simulate.models.registry import SampleConfig, register_model


@dataclass
class DecahedronConfig(SampleConfig):
    """Pt decahedron (fcc a = 3.92 Å) of ASE shape ``(p, q, r)``, trimmed to ``n_atoms`` (0 =
    untrimmed), rotated by ``euler_phi, euler_theta, euler_psi`` (°), in a cube of ``cell`` Å."""

    name: str = "pt_decahedron"
    cell: float = 108.0
    p: int = 18
    q: int = 16
    r: int = 2
    n_atoms: int = 25790
    lattice_constant: float = 3.92
    euler_phi: float = 0.0
    euler_theta: float = 0.0
    euler_psi: float = 0.0


def decahedron_points(p: int, q: int, r: int, a: float) -> np.ndarray:
    """Positions ``[N, 3]`` (Å) of the untrimmed decahedron, centred at the origin, five-fold
    axis along z, one twin plane containing the +y axis."""
    for key, value, low in (("p", p, 1), ("q", q, 1), ("r", r, 0)):
        if int(value) < low:
            raise ConfigError(f"sample.{key}", value, f"an integer >= {low}")
    if a <= 0:
        raise ConfigError("sample.lattice_constant", a, "a positive lattice constant in Å")
    pos = Decahedron("Pt", int(p), int(q), int(r), latticeconstant=a).positions
    return pos - pos.mean(axis=0)


def trim_shells(pos: np.ndarray, n_atoms: int) -> np.ndarray:
    """Keep the largest set of whole distance shells (radii equal to 1e-6 Å, from the centre
    outwards) with at most ``n_atoms`` atoms; ``pos`` ``[N, 3]`` Å about the centre."""
    r = np.round(np.linalg.norm(pos, axis=1), 6)
    radii, counts = np.unique(r, return_counts=True)
    inside = np.cumsum(counts)
    if inside[0] > n_atoms:
        raise ConfigError("sample.n_atoms", n_atoms, f">= {inside[0]} (the innermost shell)")
    return pos[r <= radii[np.searchsorted(inside, n_atoms, side="right") - 1]]


@register_model("pt_decahedron", DecahedronConfig)
def build_pt_decahedron(cfg: DecahedronConfig) -> Atoms:
    """The (trimmed, rotated) decahedron centred in its cubic cell."""
    pos = decahedron_points(cfg.p, cfg.q, cfg.r, cfg.lattice_constant)
    if cfg.n_atoms < 0 or cfg.n_atoms > len(pos):
        raise ConfigError(
            "sample.n_atoms", cfg.n_atoms, f"0 (all) or at most {len(pos)} for (p, q, r)"
        )
    if cfg.n_atoms:
        pos = trim_shells(pos, cfg.n_atoms)
    rot = euler_matrix(cfg.euler_phi, cfg.euler_theta, cfg.euler_psi)
    atoms = centred_in_cube(["Pt"] * len(pos), pos @ rot.T, cfg.cell, "sample.cell")
    atoms.info["truth_fivefold_axis"] = rot @ np.array([0.0, 0.0, 1.0])
    return atoms
