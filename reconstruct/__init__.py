"""ptychobench: shared differentiable physics layer and the one optimisation loop.

Units: Å, eV, V, V Å (projected potentials), radians (configs in mrad/degrees convert at the
boundary). Arrays in abTEM order ``[x, y]``, volumes ``[z, x, y]``. See ``docs/physics.md``.
"""

from .atoms import GaussianAtoms, render_gaussian_slices, transform_atoms
from .data import MEASUREMENTS, TomoData, from_dataset
from .fit import (
    Problem,
    build_geometry,
    build_probe,
    build_propagator,
    cell_centre,
    fit,
    nonnegative,
    r_factor,
)
from .haadf import (
    DepthDependentInteraction,
    OpticalDepthKernels,
    ddi_adjoint,
    ddi_forward,
    depth_probe_kernels,
)
from .loop import DivergenceError, GroupSettings, History, index_batches, optimize
from .losses import LOSSES, amplitude_loss, intensity_loss, poisson_nll
from .multislice import (
    MultislicePtychography,
    bandlimit_mask,
    crop_center,
    crop_center_adjoint,
    farfield_intensity,
    multislice_forward,
    resample_patterns,
)
from .optics import (
    MixedProbe,
    aberration_phase,
    aperture,
    energy2sigma,
    energy2wavelength,
    fourier_probe,
    gram_schmidt,
    normalize_modes,
    orthogonalize_modes,
    probe_from_aberrations,
    probe_from_mean_pattern,
    spatial_frequencies,
)
from .propagation import (
    Propagator,
    SlicedObject,
    antialias_aperture,
    bandlimit,
    fresnel_propagator,
    propagate,
    transmission,
)
from .result import AtomsEstimate, GeometryEstimate, Reconstruction
from .scanning import (
    extract_patches,
    extract_patches_adjoint,
    fourier_shift,
    scan_grid,
    split_positions,
)
from .tomography import (
    TiltSeriesGeometry,
    bin_slices,
    bin_slices_adjoint,
    euler_matrix,
    project,
    project_adjoint,
    rotate_volume,
    rotate_volume_adjoint,
)

__all__ = [
    "MEASUREMENTS", "AtomsEstimate", "GeometryEstimate", "Problem", "Reconstruction",
    "TomoData", "build_geometry", "build_probe", "build_propagator", "cell_centre", "fit",
    "from_dataset", "nonnegative", "r_factor",
    "DepthDependentInteraction", "DivergenceError", "GaussianAtoms", "GroupSettings", "History",
    "LOSSES", "MixedProbe", "MultislicePtychography", "OpticalDepthKernels", "Propagator",
    "SlicedObject",
    "TiltSeriesGeometry", "aberration_phase", "amplitude_loss", "antialias_aperture",
    "aperture", "bandlimit", "bandlimit_mask", "bin_slices", "bin_slices_adjoint",
    "crop_center", "crop_center_adjoint", "ddi_adjoint", "ddi_forward", "depth_probe_kernels",
    "energy2sigma", "energy2wavelength", "euler_matrix", "extract_patches",
    "extract_patches_adjoint", "farfield_intensity", "fourier_probe", "fourier_shift",
    "fresnel_propagator", "gram_schmidt", "index_batches", "intensity_loss",
    "multislice_forward", "normalize_modes", "optimize", "orthogonalize_modes", "poisson_nll",
    "probe_from_aberrations", "probe_from_mean_pattern", "project", "project_adjoint",
    "propagate", "render_gaussian_slices", "resample_patterns", "rotate_volume",
    "rotate_volume_adjoint", "scan_grid", "spatial_frequencies", "split_positions",
    "transform_atoms", "transmission",
]  # fmt: skip
