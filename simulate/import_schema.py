"""The metadata schema of ``ptychobench-import`` (:class:`ImportConfig`): one dataclass per YAML
section, each field documented in its ``metadata["doc"]`` (``ptychobench-import --schema``
prints them), and :func:`import_config`, which refuses unknown keys by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from simulate.errors import ConfigError
from simulate.validate import PARAMETRIZATIONS


def _f(doc: str, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field with its documentation in ``metadata["doc"]``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class ImportMicroscope:
    """Probe-forming optics, abTEM conventions."""

    energy: float | None = _f("beam energy (eV), required")
    semiangle: float | None = _f("convergence semiangle (mrad), required")
    defocus: float = _f("abTEM defocus = -C10 (Å); positive focuses into the specimen", 0.0)
    aberrations: dict[str, float] = _f("further abTEM polar coefficients (Å, rad): C12, phi12, "
                                       "C21, phi21, C23, phi23, C30, ... (not C10)", factory=dict)
    soft_aperture: bool = _f("whether the aperture edge is soft (abTEM's default)", True)
    source_size: float = _f("FWHM (Å) of the source; recorded only (it is in the data)", 0.0)


@dataclass
class ImportGrid:
    """The reconstruction grid: the cell, cubic voxels, pivot at its centre."""

    voxel_size: float | None = _f("voxel v (Å), required; with patterns 1/(dk v) is integral")
    shape: list[int] | None = _f("[nz, nx, ny]; nx = ny = 1/(dk v) with patterns, nz = nx by "
                                 "default; required for ADF only without a truth potential")


@dataclass
class ImportScan:
    """Scan positions (Å), x-major (index i·sy + j), absolute in the cell after ``origin``."""

    positions: Any = _f("array [T, P, 2] or [P, 2] (Å); or give start + step (+ shape)")
    start: list[float] | None = _f("first raster position [x, y] (Å)")
    step: Any = _f("raster step (Å), a number or [x, y]; estimated from positions if absent")
    shape: list[int] | None = _f("raster [sx, sy]; default from the measurement arrays")
    origin: list[float] = _f("cell coordinates (Å) of position (0, 0): added to every position",
                             factory=lambda: [0.0, 0.0])


@dataclass
class ImportDetector:
    """Pixelated detector sampling and the ADF detector."""

    angular_sampling: Any = _f("mrad per pattern pixel (a number or [x, y]), or:")
    reciprocal_sampling: Any = _f("1/Å per pattern pixel (a number or [x, y])")
    fftshifted: bool = _f("zero frequency at index k//2 (abTEM); false: at 0 (shifted here)", True)
    adf_inner: float | None = _f("ADF inner angle (mrad), required with haadf")
    adf_outer: float | None = _f("ADF outer angle (mrad), required with haadf")
    adf_defocus: float | None = _f("defocus of the ADF scan (Å); None: microscope.defocus")


@dataclass
class ImportTilts:
    """Nominal tilt geometry (what the reconstruction is given)."""

    euler: Any = _f("[T, 3] (phi, theta, psi) degrees, R = Rz(psi) Ry(theta) Rx(phi), or:")
    angles: Any = _f("[T] theta (degrees) about y")


@dataclass
class ImportMeasurements:
    """The measured arrays (at least one)."""

    diffraction: Any = _f("[T, sx, sy, kx, ky] or [T, P, kx, ky] patterns, kx = ky")
    haadf: Any = _f("[T, sx, sy] or [T, P] ADF signal on the same scan")
    electrons_per_position: float | None = _f("diffraction arrays are counts of this many "
                                              "incident electrons; None: per electron already")
    haadf_electrons_per_position: float | None = _f("the same for haadf; None: a beam fraction")


@dataclass
class ImportTruth:
    """Optional ground truth; scorers without theirs are skipped."""

    positions: Any = _f("atoms [N, 3] (x, y, z) Å in the cell, specimen frame at zero tilt")
    numbers: Any = _f("[N] atomic numbers (or symbols)")
    potential: Any = _f("[nz, nx, ny] potential (V) on the reconstruction grid")
    potential_voxel_size: float | None = _f("its voxel (Å); default grid.voxel_size")
    potential_origin: list[float] | None = _f("(x, y, z) Å of voxel [0,0,0]; default (0, 0, v/2)")
    euler: Any = _f("true [T, 3] Euler angles (degrees)")
    shifts: Any = _f("true [T, 2] image-plane shifts (Å)")
    scan_positions: Any = _f("true [T, P, 2] scan positions (Å; scan.origin is added)")


@dataclass
class ImportSimulation:
    """For series simulated elsewhere: recorded in meta; enables the antialias check."""

    potential_sampling: float | None = _f("potential sampling (Å)")
    slice_thickness: float | None = _f("slice thickness (Å)")
    parametrization: str | None = _f(f"one of {PARAMETRIZATIONS}")
    num_configurations: int | None = _f("frozen-phonon configurations or MD snapshots")


SECTIONS: dict[str, type] = {
    "microscope": ImportMicroscope, "grid": ImportGrid, "scan": ImportScan,
    "detector": ImportDetector, "tilts": ImportTilts, "measurements": ImportMeasurements,
    "truth": ImportTruth, "simulation": ImportSimulation,
}


@dataclass
class ImportConfig:
    """The import metadata YAML: ``name``, ``description`` and the sections of SECTIONS."""

    name: str = _f("a short name, recorded in meta", "")
    description: str = _f("free text, recorded in the config", "")
    microscope: ImportMicroscope = _f("optics", factory=ImportMicroscope)
    grid: ImportGrid = _f("reconstruction grid", factory=ImportGrid)
    scan: ImportScan = _f("scan positions", factory=ImportScan)
    detector: ImportDetector = _f("detectors", factory=ImportDetector)
    tilts: ImportTilts = _f("tilt angles", factory=ImportTilts)
    measurements: ImportMeasurements = _f("measured arrays", factory=ImportMeasurements)
    truth: ImportTruth = _f("optional truth", factory=ImportTruth)
    simulation: ImportSimulation = _f("optional simulation record", factory=ImportSimulation)


def import_config(data: Any) -> ImportConfig:
    """:class:`ImportConfig` from a mapping, refusing unknown keys by name (``section.key``)."""
    if not isinstance(data, dict):
        raise ConfigError("metadata", type(data).__name__, "a mapping of the ImportConfig keys")
    allowed = [f.name for f in dataclasses.fields(ImportConfig)]
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(key, value, f"a key of {sorted(allowed)}")
        if key not in SECTIONS:
            out[key] = value
            continue
        if not isinstance(value, dict | None):
            raise ConfigError(key, value, "a mapping")
        keys = {f.name for f in dataclasses.fields(SECTIONS[key])}
        for sub, v in (value or {}).items():
            if sub not in keys:
                raise ConfigError(f"{key}.{sub}", v, f"a key of {sorted(keys)}")
        out[key] = SECTIONS[key](**(value or {}))
    return ImportConfig(**out)


def schema_text() -> str:
    """Every YAML key with its documentation (``ptychobench-import --schema``)."""
    lines = []
    for sec in dataclasses.fields(ImportConfig):
        if sec.name not in SECTIONS:
            lines.append(f"{sec.name}: {sec.metadata['doc']}")
            continue
        schema = SECTIONS[sec.name]
        lines.append(f"{sec.name}:  # {schema.__doc__}")
        lines += [f"  {f.name}: {f.metadata['doc']}" for f in dataclasses.fields(schema)]
    return "\n".join(lines)
