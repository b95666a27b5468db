"""Structured-config schemas of the simulation (plain dataclasses; Hydra registers them).

Units follow CONVENTIONS.md: lengths in Å, convergence/detector angles in mrad, tilt angles in
degrees, energy in eV, dose in e/Å². Each sample builder has its own schema in
:mod:`simulate.models`; this module holds everything that is not specimen specific.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MicroscopeConfig:
    """Probe-forming optics.

    ``defocus`` is abTEM's (``defocus = -C10``; positive moves the focus into the specimen).
    ``aberrations`` holds further abTEM polar coefficients in Å and radians (``C30``, ``C12``,
    ``phi12`` ...). ``source_size`` is the FWHM in Å of a Gaussian source (partial spatial
    coherence), applied by Gaussian weighting of neighbouring scan positions.
    """

    energy: float = 300e3
    semiangle: float = 21.0
    defocus: float = 0.0
    aberrations: dict[str, float] = field(default_factory=dict)
    soft_aperture: bool = True
    source_size: float = 0.0


@dataclass
class PotentialConfig:
    """abTEM potential used for the forward simulation (not the reconstruction grid)."""

    sampling: float = 0.057
    slice_thickness: float = 2.0
    parametrization: str = "lobato"
    projection: str = "infinite"


@dataclass
class MethodConfig:
    """Simulation algorithm: abTEM ``multislice`` (one probe per position) or ``prism`` (the
    S-matrix, interpolation factor ``prism_interpolation``; exact at 1, faster above 1 by
    limiting the probe to extent / interpolation)."""

    name: str = "multislice"
    prism_interpolation: int = 1


@dataclass
class ScanConfig:
    """Raster scan. ``start``/``end`` in Å; ``None`` means the whole cell (end exclusive).

    ``jitter`` is the standard deviation in Å of random scan-position errors; the true positions
    are stored beside the nominal ones.
    """

    step: float = 0.4
    start: list[float] | None = None
    end: list[float] | None = None
    jitter: float = 0.0
    seed: int = 0


@dataclass
class DetectorConfig:
    """Pixelated detector cropped at ``max_angle`` (mrad), at abTEM's native reciprocal sampling
    (1 / cell extent); reconstructions resample to their own grid.

    With ``adf`` the annular (ADF/HAADF) series between ``adf_inner`` and ``adf_outer`` (mrad) is
    recorded from the same exit waves. ``pixelated = False`` records the ADF series only (for
    HAADF tomography, paper 004), which with PRISM makes wide-angle detectors affordable.
    ``adf_defocus`` (Å, abTEM's sign) records the ADF series in its own scan with that defocus
    (an ADF tomography series is acquired in focus, ``0``, while 4D-STEM may use -20 nm);
    None: the same exit waves as the patterns.
    """

    pixelated: bool = True
    max_angle: float = 40.0
    adf: bool = False
    adf_inner: float = 40.0
    adf_outer: float = 200.0
    adf_defocus: float | None = None


@dataclass
class TiltConfig:
    """Tilt series. ``angles`` (θ about y, degrees) or ``euler`` (``[[φ, θ, ψ], ...]``) win over
    ``range`` + ``count``. ``shift_max`` (Å) draws random per-tilt global shifts uniformly in
    ``[-shift_max, shift_max]²``; ``euler_error`` (degrees, standard deviation) perturbs the true
    angles away from the nominal ones. Both are recorded as truth.
    """

    angles: list[float] | None = None
    euler: list[list[float]] | None = None
    range: list[float] = field(default_factory=lambda: [-90.0, 90.0])
    count: int = 20
    endpoint: bool = False
    shift_max: float = 0.0
    euler_error: float = 0.0
    seed: int = 0


@dataclass
class PhononConfig:
    """Frozen phonons: ``num_configs`` configurations with per-element displacement standard
    deviations ``sigmas`` (Å, per Cartesian direction); ``default_sigma`` for other elements.
    ``num_configs = 0`` simulates the static model."""

    num_configs: int = 8
    sigmas: dict[str, float] = field(default_factory=dict)
    default_sigma: float = 0.08
    seed: int = 0


@dataclass
class TruthConfig:
    """Ground-truth potential volume grid: cubic voxels of ``voxel_size`` Å over the cell."""

    voxel_size: float = 0.4


@dataclass
class NoiseConfig:
    """Poisson noise applied at load time. ``dose`` in e/Å², ``per`` is ``tilt`` or ``series``;
    ``dose = inf`` is noise-free."""

    dose: float = float("inf")
    per: str = "series"
    seed: int = 0


@dataclass
class SimulationConfig:
    """Everything that determines the stored (noise-free) dataset, and so its cache key."""

    sample: Any = None
    microscope: MicroscopeConfig = field(default_factory=MicroscopeConfig)
    potential: PotentialConfig = field(default_factory=PotentialConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tilts: TiltConfig = field(default_factory=TiltConfig)
    phonons: PhononConfig = field(default_factory=PhononConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)


@dataclass
class ComputeConfig:
    """How a job is computed, not what: none of these keys changes a result or a cache key.

    Simulation (abTEM's dask graph of tilts × frozen-phonon configurations):

    - ``name``: ``local`` (this process, dask's threaded scheduler, one tilt after another),
      ``dask_local`` (a ``distributed.LocalCluster`` of ``workers`` processes with
      ``threads_per_worker`` threads each) or ``dask`` (an existing scheduler at ``address``,
      e.g. one that a dask-jobqueue SLURM cluster started). Every option gives bitwise the
      same dataset.
    - ``sim_device``: ``cpu``, or ``gpu`` for abTEM's multislice on CuPy (the ``gpu`` extra).

    Reconstruction:

    - ``ddp``: data-parallel over the scan positions and tilts of each batch with
      ``torch.distributed`` (launch with ``torchrun``); the same updates as one process.
    - ``max_memory_gb``: when the cropped, noisy patterns exceed it, they are staged in a
      scratch zarr store and read per batch instead of held in memory (None: always in memory).
    """

    name: str = "local"
    workers: int = 2
    threads_per_worker: int = 1
    address: str | None = None
    sim_device: str = "cpu"
    ddp: bool = False
    max_memory_gb: float | None = None
