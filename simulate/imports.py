"""Import an external 4D-STEM and/or ADF tilt series into the dataset format (``import-*`` keys).

A small YAML (:class:`ImportConfig`, documented in docs/dataset_format.md, "Importing your own
data") names the arrays (``file.npy``, ``file.npz:key``, ``file.zarr:/path``, ``file.h5:/path``,
relative to the YAML; small ones may be written inline) and the metadata. The series is checked
with the rules of simulated data where they apply, placed on the reconstruction grid (the cell:
``n`` voxels of ``v`` Å with ``1 / (n v)`` the detector's reciprocal sampling, positions absolute
in the cell) and written atomically into the cache like a simulated entry, with its provenance.

Imported measurements are stored as they were measured, per incident electron: counts are
divided by ``measurements.electrons_per_position`` when it is given, otherwise the arrays are
taken to be per incident electron already. ``Dataset.measurements`` with ``dose = inf`` returns
them unchanged; a finite dose draws Poisson counts around them (meant for noise-free imports).
Truth (atoms, potential, true geometry) is stored only where given; scorers without their truth
are skipped. ``meta["grid_shape"]`` records the reconstruction grid even without a potential.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from abtem.transfer import polar_symbols
from ase.data import atomic_numbers

from simulate.errors import ConfigError
from simulate.physics import antialias_cutoff_mrad, wavelength
from simulate.provenance import provenance
from simulate.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    Dataset,
    _locked,
    _manifest,
    _open_valid,
    _put,
    check_cache_dir,
    to_plain,
)
from simulate.validate import PARAMETRIZATIONS

PREFIX = "import-"
ABERRATIONS = tuple(s for s in polar_symbols if s != "C10")
Reader = Callable[[str, Any], np.ndarray]  # (field, YAML value) -> array


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

    angular_sampling: Any = _f("mrad per pattern pixel (a number or [x, y]); or:")
    reciprocal_sampling: Any = _f("1/Å per pattern pixel (a number or [x, y])")
    fftshifted: bool = _f("zero frequency at index k//2 (abTEM); false: at 0 (shifted here)", True)
    adf_inner: float | None = _f("ADF inner angle (mrad), required with haadf")
    adf_outer: float | None = _f("ADF outer angle (mrad), required with haadf")
    adf_defocus: float | None = _f("defocus of the ADF scan (Å); None: microscope.defocus")


@dataclass
class ImportTilts:
    """Nominal tilt geometry (what the reconstruction is given)."""

    euler: Any = _f("[T, 3] (phi, theta, psi) degrees, R = Rz(psi) Ry(theta) Rx(phi); or:")
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
    """For series simulated elsewhere: recorded in meta; enables the antialias checks."""

    potential_sampling: float | None = _f("potential sampling (Å)")
    slice_thickness: float | None = _f("slice thickness (Å)")
    parametrization: str | None = _f(f"one of {PARAMETRIZATIONS}")
    num_configurations: int | None = _f("frozen-phonon configurations or MD snapshots")


@dataclass
class ImportConfig:
    """The import metadata YAML."""

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
    sections = {f.name: f.type for f in dataclasses.fields(ImportConfig)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in sections:
            raise ConfigError(key, value, f"a key of {sorted(sections)}")
        schema = globals().get(str(sections[key]))
        if schema is None:
            out[key] = value
            continue
        if not isinstance(value, dict | None):
            raise ConfigError(key, value, "a mapping")
        allowed = {f.name for f in dataclasses.fields(schema)}
        for sub, v in (value or {}).items():
            if sub not in allowed:
                raise ConfigError(f"{key}.{sub}", v, f"a key of {sorted(allowed)}")
        out[key] = schema(**(value or {}))
    return ImportConfig(**out)


def schema_text() -> str:
    """Every YAML key with its documentation (``ptychobench-import --schema``)."""
    lines = []
    for sec in dataclasses.fields(ImportConfig):
        schema = globals().get(str(sec.type))
        if schema is None:
            lines.append(f"{sec.name}: {sec.metadata['doc']}")
            continue
        lines.append(f"{sec.name}:  # {schema.__doc__}")
        lines += [f"  {f.name}: {f.metadata['doc']}" for f in dataclasses.fields(schema)]
    return "\n".join(lines)


def array_digest(a: np.ndarray) -> str:
    """BLAKE2b-128 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode(), digest_size=16)
    h.update(a.tobytes())
    return h.hexdigest()


def inline(key: str, ref: Any) -> np.ndarray:
    """The array written inline in the YAML (a number or nested lists); the default reader of
    :func:`assemble` (``experiments.importer.FileReader`` also reads file references)."""
    if isinstance(ref, str):
        raise ConfigError(key, ref, "an inline number or list (file references need "
                                    "experiments.importer)")
    try:
        return np.asarray(ref, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, ref, "a number, a list of numbers or a file reference") from exc


# --- checks -------------------------------------------------------------------------------------

def _positive(key: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0
                                       and math.isfinite(value)):
        raise ConfigError(key, value, f"a finite positive number ({unit})")
    return float(value)


def _finite(key: str, a: np.ndarray, shape: str, ok: bool) -> np.ndarray:
    if not ok:
        raise ConfigError(key, f"shape {list(a.shape)}", shape)
    if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
        raise ConfigError(key, f"dtype {a.dtype}", f"finite real numbers, {shape}")
    return a.astype(np.float64)


def _pair(key: str, value: Any, unit: str, square: bool = False) -> np.ndarray:
    allowed = "equal x and y values (square pixels)" if square else "two positive numbers"
    try:
        a = np.broadcast_to(np.asarray(value, dtype=np.float64), (2,))
    except (TypeError, ValueError):
        a = np.full(2, np.nan)
    if not np.all(np.isfinite(a)) or np.any(a <= 0) \
            or (square and not math.isclose(a[0], a[1], rel_tol=1e-6)):
        raise ConfigError(key, value, f"a positive number or [x, y] ({unit}), {allowed}")
    return a.astype(np.float64)


def _check_optics(c: ImportConfig) -> None:
    m, s = c.microscope, c.simulation
    _positive("microscope.energy", m.energy, "eV")
    _positive("microscope.semiangle", m.semiangle, "mrad")
    if not (isinstance(m.source_size, int | float) and m.source_size >= 0):
        raise ConfigError("microscope.source_size", m.source_size, "a FWHM >= 0 Å")
    if not (isinstance(m.defocus, int | float) and math.isfinite(m.defocus)):
        raise ConfigError("microscope.defocus", m.defocus, "a finite defocus (Å)")
    for name, value in dict(m.aberrations or {}).items():
        if name not in ABERRATIONS:
            raise ConfigError(f"microscope.aberrations.{name}", value,
                              f"a polar coefficient of {list(ABERRATIONS)} (C10: use defocus)")
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise ConfigError(f"microscope.aberrations.{name}", value, "a finite number")
    for key in ("potential_sampling", "slice_thickness"):
        if getattr(s, key) is not None:
            _positive(f"simulation.{key}", getattr(s, key), "Å")
    if s.parametrization is not None and s.parametrization not in PARAMETRIZATIONS:
        raise ConfigError("simulation.parametrization", s.parametrization,
                          f"one of {PARAMETRIZATIONS}")


def _tilts(c: ImportConfig, read: Reader) -> np.ndarray:
    t = c.tilts
    if (t.euler is None) == (t.angles is None):
        raise ConfigError("tilts", to_plain(dataclasses.asdict(t)), "exactly one of euler, angles")
    if t.euler is not None:
        e = read("tilts.euler", t.euler)
        e = _finite("tilts.euler", e, "[T, 3] (phi, theta, psi) degrees",
                    e.ndim == 2 and e.shape[1] == 3 and len(e) > 0)
        key = "tilts.euler"
    else:
        a = read("tilts.angles", t.angles)
        a = _finite("tilts.angles", a, "[T] degrees", a.ndim == 1 and len(a) > 0)
        e, key = np.stack([np.zeros_like(a), a, np.zeros_like(a)], axis=1), "tilts.angles"
    if np.ptp(e[:, 1]) > 180.0:
        raise ConfigError(key, f"span {np.ptp(e[:, 1])}°", "a tilt span of at most 180°")
    return e


def _measurement(key: str, a: np.ndarray, t: int, scan: list | None, pattern: bool) -> np.ndarray:
    """``[T, sx, sy(, k, k)]`` float from ``[T, sx, sy(, k, k)]`` or ``[T, P(, k, k)]``."""
    tail = 2 if pattern else 0
    shape = "[T, sx, sy, kx, ky] or [T, P, kx, ky]" if pattern else "[T, sx, sy] or [T, P]"
    ok = a.ndim in (2 + tail, 3 + tail) and (not pattern or a.shape[-1] == a.shape[-2] > 0)
    a = _finite(key, a, f"{shape}, square patterns" if pattern else shape, ok)
    if a.shape[0] != t:
        raise ConfigError(key, f"{a.shape[0]} tilts", f"{t} tilts, as in tilts")
    if a.ndim == 3 + tail:
        if scan is not None and list(a.shape[1:3]) != list(scan):
            raise ConfigError(key, f"scan {list(a.shape[1:3])}", f"scan.shape {list(scan)}")
        return a
    if scan is None or int(np.prod(scan)) != a.shape[1]:
        raise ConfigError("scan.shape", scan, f"[sx, sy] with sx·sy = {a.shape[1]} ({key})")
    return a.reshape(t, *scan, *a.shape[2:])


def _positions(c: ImportConfig, read: Reader, t: int, sxy: tuple[int, int],
               extent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nominal positions ``[T, P, 2]`` absolute in the cell and the scan step ``[2]`` Å."""
    s, p = c.scan, sxy[0] * sxy[1]
    origin = _finite("scan.origin", np.asarray(s.origin, dtype=np.float64), "[x, y] Å",
                     np.shape(s.origin) == (2,))
    if (s.positions is None) == (s.start is None):
        raise ConfigError("scan.positions", s.positions, "an array of positions, or scan.start "
                                                         "+ scan.step (exactly one)")
    if s.positions is not None:
        pos = read("scan.positions", s.positions)
        pos = _finite("scan.positions", pos, f"[T, P, 2] or [P, 2] Å with T = {t}, P = {p}",
                      pos.shape in ((t, p, 2), (p, 2)))
        pos = np.broadcast_to(pos, (t, p, 2)).copy()
    else:
        start = _finite("scan.start", np.asarray(s.start, dtype=np.float64), "[x, y] Å",
                        np.shape(s.start) == (2,))
        if s.step is None:
            raise ConfigError("scan.step", None, "the raster step (Å) with scan.start")
        step = _pair("scan.step", s.step, "Å")
        xs, ys = (start[i] + step[i] * np.arange(sxy[i]) for i in range(2))
        grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        pos = np.repeat(grid[None], t, axis=0)
    pos = pos + origin
    lo, hi = pos.reshape(-1, 2).min(0), pos.reshape(-1, 2).max(0)
    if np.any(lo < -1e-9) or np.any(hi > extent[:2] + 1e-9):
        raise ConfigError("scan.positions", f"x, y in [{lo.round(3).tolist()}, "
                          f"{hi.round(3).tolist()}] Å", f"positions absolute in the cell [0, "
                          f"{extent[0]:g}] x [0, {extent[1]:g}] Å (shift them with scan.origin)")
    if s.step is not None:
        return pos, _pair("scan.step", s.step, "Å")
    g = pos[0].reshape(*sxy, 2)
    d = [np.abs(np.diff(g[..., i], axis=i)).mean() if sxy[i] > 1 else math.nan for i in (0, 1)]
    d = [d[1] if math.isnan(d[0]) else d[0], d[0] if math.isnan(d[1]) else d[1]]
    if not all(math.isfinite(x) and x > 0 for x in d):
        raise ConfigError("scan.step", None, "the scan step (Å): it cannot be estimated here")
    return pos, np.asarray(d)


def _grid(c: ImportConfig, dk: np.ndarray | None, potential: np.ndarray | None,
          ) -> tuple[float, tuple[int, int, int]]:
    """Voxel (Å) and reconstruction grid ``(nz, nx, ny)``: nx = ny = 1/(dk v) with patterns."""
    v = _positive("grid.voxel_size", c.grid.voxel_size, "Å")
    given = c.grid.shape
    if given is not None and not (len(given) == 3 and all(isinstance(n, int) and n > 0
                                                          for n in given)):
        raise ConfigError("grid.shape", given, "[nz, nx, ny] positive integers")
    shape = tuple(given) if given is not None else None
    if dk is not None:
        n_real = 1.0 / (float(dk[0]) * v)
        n = int(round(n_real))
        if n < 1 or abs(n * float(dk[0]) * v - 1.0) > 1e-6:
            near = [1.0 / (m * float(dk[0])) for m in (max(1, math.floor(n_real)),
                                                       math.ceil(n_real))]
            raise ConfigError("grid.voxel_size", v, f"a voxel v with 1/(dk v) integral: the "
                              f"detector sampling dk = {float(dk[0]):.8g} 1/Å gives 1/(dk v) = "
                              f"{n_real:.6f}, not an integer number of voxels in the cell; e.g. "
                              f"v = {near[0]:.8g} or {near[1]:.8g} Å")
        if shape is not None and tuple(shape[1:]) != (n, n):
            raise ConfigError("grid.shape", list(shape), f"[nz, {n}, {n}]: the cell 1/dk = "
                              f"{1 / float(dk[0]):.6g} Å has {n} voxels of {v} Å")
        nz = int(potential.shape[0]) if potential is not None and potential.ndim == 3 else n
        shape = shape if shape is not None else (nz, n, n)
    if shape is None and potential is not None and potential.ndim == 3:
        shape = tuple(int(x) for x in potential.shape)
    if shape is None:
        raise ConfigError("grid.shape", None, "[nz, nx, ny]: without patterns or a truth "
                                              "potential the cell must be given")
    return v, (int(shape[0]), int(shape[1]), int(shape[2]))


# --- assembly and writing ----------------------------------------------------------------------

@dataclass
class Imported:
    """Everything an import entry holds, before it is written."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, dict[str, Any]]
    meta: dict[str, Any]
    config: dict[str, Any]
    sources: dict[str, Any]

    def key(self) -> str:
        """``import-`` + digest of the stored arrays, their attributes and the meta."""
        payload = {"format_version": FORMAT_VERSION, "meta": self.meta, "attrs": self.attrs,
                   "arrays": {k: array_digest(a) for k, a in sorted(self.arrays.items())}}
        text = json.dumps(to_plain(payload), sort_keys=True, default=str)
        return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]


def _truth(c: ImportConfig, read: Reader, t: int, p: int, origin: np.ndarray,
           out: dict[str, np.ndarray]) -> None:
    tr = c.truth
    if (tr.positions is None) != (tr.numbers is None):
        raise ConfigError("truth.numbers" if tr.numbers is None else "truth.positions", None,
                          "truth.positions and truth.numbers together")
    if tr.positions is not None:
        pos = read("truth.positions", tr.positions)
        pos = _finite("truth.positions", pos, "[N, 3] Å", pos.ndim == 2 and pos.shape[1] == 3)
        raw = tr.numbers if isinstance(tr.numbers, str) and tr.numbers not in atomic_numbers \
            else None
        nums = (read("truth.numbers", raw) if raw is not None
                else np.asarray([atomic_numbers.get(z, -1) if isinstance(z, str) else z
                                 for z in (tr.numbers if isinstance(tr.numbers, list)
                                           else [tr.numbers])]))
        if nums.dtype.kind in "US":
            nums = np.asarray([atomic_numbers.get(str(z), -1) for z in nums.ravel()])
        if nums.shape != (len(pos),) or not np.all((nums >= 1) & (nums <= 118)) \
                or not np.all(nums == np.rint(nums)):
            raise ConfigError("truth.numbers", f"shape {list(nums.shape)}",
                              f"[{len(pos)}] atomic numbers 1..118 or element symbols")
        out["truth/positions"], out["truth/numbers"] = pos, nums.astype(np.int64)
    for key, shape in (("euler", (t, 3)), ("shifts", (t, 2)), ("scan_positions", (t, p, 2))):
        value = getattr(tr, key)
        if value is None:
            continue
        a = read(f"truth.{key}", value)
        a = _finite(f"truth.{key}", a, f"shape {list(shape)}", a.shape == shape)
        name = {"euler": "euler_deg", "scan_positions": "positions"}.get(key, key)
        out[f"geometry/{name}"] = a + origin if key == "scan_positions" else a


def _potential(c: ImportConfig, pot: np.ndarray, v: float, shape: tuple) -> dict[str, Any]:
    pot = _finite("truth.potential", pot, f"[nz, nx, ny] = {list(shape)}, the grid",
                  pot.shape == shape)
    pv = c.truth.potential_voxel_size if c.truth.potential_voxel_size is not None else v
    if not math.isclose(_positive("truth.potential_voxel_size", pv, "Å"), v, rel_tol=1e-6):
        raise ConfigError("truth.potential_voxel_size", pv, f"grid.voxel_size = {v} Å: the "
                          "truth is scored on the reconstruction grid (resample it first)")
    o = np.asarray(c.truth.potential_origin if c.truth.potential_origin is not None
                   else [0.0, 0.0, v / 2], dtype=np.float64)
    if o.shape != (3,) or not np.allclose(o, [0.0, 0.0, v / 2], atol=1e-6 * v):
        raise ConfigError("truth.potential_origin", c.truth.potential_origin,
                          f"[0, 0, {v / 2}] Å: voxel [k, i, j] of the grid is at (i v, j v, "
                          "(k + 1/2) v)")
    return {"voxel_size": v, "origin": o.tolist(), "unit": "V", "_array": pot}


def assemble(c: ImportConfig, read: Reader = inline) -> Imported:
    """Read (``read(field, value)``), check and place on the reconstruction grid every array of
    ``c``. Raises :class:`ConfigError` naming the field, before anything is written."""
    _check_optics(c)
    euler = _tilts(c, read)
    t, me, d = len(euler), c.measurements, c.detector
    if me.diffraction is None and me.haadf is None:
        raise ConfigError("measurements", None, "diffraction and/or haadf")
    scan = None if c.scan.shape is None else list(c.scan.shape)
    if scan is not None and not (len(scan) == 2 and all(isinstance(n, int) and n > 0
                                                        for n in scan)):
        raise ConfigError("scan.shape", scan, "[sx, sy] positive integers")
    diff = haadf = dk = None
    if me.diffraction is not None:
        diff = read("measurements.diffraction", me.diffraction)
        diff = _measurement("measurements.diffraction", diff, t, scan, True)
        scan = list(diff.shape[1:3])
        if (d.angular_sampling is None) == (d.reciprocal_sampling is None):
            raise ConfigError("detector.angular_sampling", d.angular_sampling,
                              "exactly one of detector.angular_sampling (mrad) or "
                              "detector.reciprocal_sampling (1/Å) with diffraction")
        lam = wavelength(float(c.microscope.energy))
        dk = (_pair("detector.reciprocal_sampling", d.reciprocal_sampling, "1/Å", True)
              if d.reciprocal_sampling is not None
              else _pair("detector.angular_sampling", d.angular_sampling, "mrad", True)
              * 1e-3 / lam)
        if not d.fftshifted:
            diff = np.fft.fftshift(diff, axes=(-2, -1))
    if me.haadf is not None:
        haadf = read("measurements.haadf", me.haadf)
        haadf = _measurement("measurements.haadf", haadf, t, scan, False)
        scan = list(haadf.shape[1:3])
        inner, outer = d.adf_inner, d.adf_outer
        for key, value in (("detector.adf_inner", inner), ("detector.adf_outer", outer)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(key, value, "an angle >= 0 mrad (required with haadf)")
        if not inner < outer:
            raise ConfigError("detector.adf_inner", inner, "0 <= adf_inner < adf_outer")
        if d.adf_defocus is not None and not (isinstance(d.adf_defocus, int | float)
                                              and math.isfinite(d.adf_defocus)):
            raise ConfigError("detector.adf_defocus", d.adf_defocus, "a finite defocus in Å")
    assert scan is not None
    pot = (read("truth.potential", c.truth.potential)
           if c.truth.potential is not None else None)
    v, shape = _grid(c, dk, pot)
    extent = np.asarray([shape[1] * v, shape[2] * v, shape[0] * v])
    s = c.simulation
    if haadf is not None and s.potential_sampling is not None:
        cutoff = antialias_cutoff_mrad(float(c.microscope.energy), s.potential_sampling,
                                       float(extent[0]))
        if d.adf_outer > cutoff:
            raise ConfigError("detector.adf_outer", d.adf_outer, f"an angle in (0, {cutoff:.2f}]"
                              f" mrad, the antialias limit of simulation.potential_sampling = "
                              f"{s.potential_sampling} Å")
    sxy = (int(scan[0]), int(scan[1]))
    positions, step = _positions(c, read, t, sxy, extent)
    arrays: dict[str, np.ndarray] = {"geometry/euler_nominal_deg": euler,
                                     "geometry/positions_nominal": positions}
    attrs: dict[str, dict[str, Any]] = {}
    scale = {}
    for kind, a, e_key in (("diffraction", diff, "electrons_per_position"),
                           ("haadf", haadf, "haadf_electrons_per_position")):
        if a is None:
            continue
        e = getattr(me, e_key)
        if e is not None:
            a = a / _positive(f"measurements.{e_key}", e, "electrons")
        arrays[f"measurements/{kind}"], scale[kind] = a.astype(np.float32), e
    _truth(c, read, t, sxy[0] * sxy[1], np.asarray(c.scan.origin, dtype=float), arrays)
    if pot is not None:
        pattrs = _potential(c, pot, v, shape)
        arrays["truth/potential"] = pattrs.pop("_array").astype(np.float32)
        attrs["truth/potential"] = pattrs
    m = c.microscope
    meta = {
        "source": "import", "name": c.name,
        "energy_eV": float(m.energy), "semiangle_mrad": float(m.semiangle),
        "defocus_A": float(m.defocus), "aberrations": dict(m.aberrations or {}),
        "source_size_A": float(m.source_size), "scan_step_A": step.tolist(),
        "scan_shape": list(sxy),
        "detector_shape": None if diff is None else list(diff.shape[-2:]),
        "angular_sampling_mrad": None if dk is None else
        (dk * 1e3 * wavelength(float(m.energy))).tolist(),
        "reciprocal_sampling_invA": None if dk is None else dk.tolist(),
        "potential_sampling_A": s.potential_sampling, "slice_thickness_A": s.slice_thickness,
        "parametrization": s.parametrization, "num_configurations": s.num_configurations,
        "voxel_size_A": v, "origin_xyz_A": [0.0, 0.0, v / 2], "grid_shape": list(shape),
        "adf_mrad": None if haadf is None else [float(d.adf_inner), float(d.adf_outer)],
        "adf_defocus_A": None if haadf is None else
        float(d.adf_defocus if d.adf_defocus is not None else m.defocus),
        "measured_electrons_per_position": scale,
    }
    return Imported(arrays, attrs, meta, to_plain(c), dict(getattr(read, 'sources', {})))


def write_import(imp: Imported, cache_dir: str | Path, yaml_text: str = "",
                 yaml_path: str = "") -> tuple[Dataset, bool]:
    """Write ``imp`` into the cache atomically (temporary directory, manifest, rename, under
    the key's lock). Returns the dataset and whether it was written (False: already there)."""
    root = check_cache_dir(cache_dir)
    key = imp.key()
    path = root / key
    if (found := _open_valid(path)) is not None:
        return found, False
    with _locked(root / f".{key}.lock"):
        if (found := _open_valid(path)) is not None:
            return found, False
        for orphan in root.glob(f".{key}.*"):
            if orphan.is_dir():
                shutil.rmtree(orphan, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            g = zarr.open_group(store=str(tmp), mode="w")
            for name in ("measurements", "geometry", "truth"):
                g.create_group(name)
            for name, a in imp.arrays.items():
                group, _, leaf = name.partition("/")
                arr = _put(g[group], leaf, a)
                arr.attrs.update(imp.attrs.get(name, {}))
            record = {"yaml_path": yaml_path, "yaml": yaml_text, "sources": imp.sources}
            g.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "key": key,
                            "meta": to_plain(imp.meta), "config": imp.config,
                            "provenance": provenance() | {"import": to_plain(record)}})
            (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp)))
            try:
                os.rename(tmp, path)
            except OSError:
                if not path.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Dataset(path), True


__all__ = ["ImportConfig", "Imported", "Reader", "array_digest", "assemble", "import_config",
           "inline", "schema_text", "write_import"]
