"""ptychobench metrics: pure functions of arrays, with explicit units.

Positions are in Å ((x, y, z) for atoms, (x, y) for columns), RMSDs in pm, resolutions in Å,
spatial frequencies in 1/Å, tilts in mrad, Euler angles in degrees. Volumes are ``[z, x, y]``
with a scalar ``voxel_size`` (Å) and an ``origin`` (the (x, y, z) Å position of voxel
``[0, 0, 0]``). See docs/metrics.md.
"""

from metrics.alignment import alignment_errors, euler_to_matrix, matrix_to_euler
from metrics.classify import SpeciesClasses, classify_species, integrated_intensity
from metrics.columns import (
    assign_columns,
    atom_columns,
    column_com,
    column_displacements,
    columns_from_atoms,
    r_factor,
    srtio3_displacements,
    thickness_error_A,
    tilt_error_mrad,
    vibration_spread,
)
from metrics.grid import (
    angstrom_to_pixel,
    angstrom_to_voxel,
    pixel_to_angstrom,
    voxel_to_angstrom,
)
from metrics.matching import (
    AtomMatch,
    AtomScores,
    match_atoms,
    match_atoms_dense,
    match_status,
    matched_deviations,
    score_atoms,
)
from metrics.resolution import (
    FourierCorrelation,
    fourier_ring_correlation,
    fourier_shell_correlation,
    half_bit_threshold,
    information_limit,
    one_bit_threshold,
    peak_elongation,
    radial_power_spectrum,
    resolution_at_threshold,
)
from metrics.tracing import TracedAtoms, find_columns, find_peaks, trace_atoms

__all__ = [
    "peak_elongation",
    "AtomMatch",
    "AtomScores",
    "FourierCorrelation",
    "SpeciesClasses",
    "TracedAtoms",
    "alignment_errors",
    "angstrom_to_pixel",
    "angstrom_to_voxel",
    "assign_columns",
    "atom_columns",
    "classify_species",
    "column_com",
    "column_displacements",
    "columns_from_atoms",
    "euler_to_matrix",
    "find_columns",
    "find_peaks",
    "fourier_ring_correlation",
    "fourier_shell_correlation",
    "half_bit_threshold",
    "information_limit",
    "integrated_intensity",
    "match_atoms",
    "match_atoms_dense",
    "match_status",
    "matched_deviations",
    "matrix_to_euler",
    "one_bit_threshold",
    "pixel_to_angstrom",
    "r_factor",
    "radial_power_spectrum",
    "resolution_at_threshold",
    "score_atoms",
    "srtio3_displacements",
    "thickness_error_A",
    "tilt_error_mrad",
    "trace_atoms",
    "vibration_spread",
    "voxel_to_angstrom",
]
