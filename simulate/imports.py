"""Import an external 4D-STEM and/or ADF tilt series into the dataset format (``import-*`` keys).

The metadata YAML (:class:`ImportConfig`; docs/dataset_format.md, "Importing your own data") is
checked with the rules of simulated data where they apply, its arrays are placed on the
reconstruction grid (the cell: ``n`` voxels of ``v`` Å, ``1 / (n v)`` the detector's reciprocal
sampling, scan positions absolute in the cell) and the entry is written atomically into the cache
with its provenance. Measurements are stored per incident electron as measured (counts divided by
``electrons_per_position`` when given): ``Dataset.measurements`` at ``dose = inf`` returns them
unchanged. Truth is stored only where given; ``meta["grid_shape"]`` records the grid. File
references are read by ``experiments.importer``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from abtem.transfer import polar_symbols
from ase.data import atomic_numbers

from simulate import store
from simulate.errors import ConfigError
from simulate.import_schema import SECTIONS, ImportConfig, import_config, schema_text
from simulate.physics import antialias_cutoff_mrad, wavelength
from simulate.provenance import provenance
from simulate.store import Dataset, to_plain
from simulate.validate import PARAMETRIZATIONS

PREFIX = "import-"
ABERRATIONS = tuple(s for s in polar_symbols if s != "C10")
Reader = Callable[[str, Any], np.ndarray]  # (field, YAML value) -> array


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
        raise ConfigError(key, ref, "an inline value (files are read by experiments.importer)")
    try:
        return np.asarray(ref, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, ref, "a number, a list of numbers or a file reference") from exc


# --- checks -------------------------------------------------------------------------------------

def _number(key: str, value: Any, allowed: str, ok: Callable[[float], bool] = lambda x: x > 0,
            ) -> float:
    """``value`` as a float if it is a finite real number with ``ok(value)``."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not ok(value):
        raise ConfigError(key, value, allowed)
    return float(value)


def _finite(key: str, a: np.ndarray, shape: str, ok: bool, dtype: type = np.float64) -> np.ndarray:
    """``a`` as ``dtype`` if ``ok`` (its shape test) and all finite, else a ConfigError."""
    if not ok:
        raise ConfigError(key, f"shape {list(a.shape)}", shape)
    if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
        raise ConfigError(key, f"dtype {a.dtype}", f"finite real numbers, {shape}")
    return a.astype(dtype, copy=False)


def _pair(key: str, value: Any, unit: str, square: bool = False) -> np.ndarray:
    """``[x, y]`` from a positive number or pair (``square``: equal x and y)."""
    try:
        a = np.broadcast_to(np.asarray(value, dtype=np.float64), (2,))
    except (TypeError, ValueError):
        a = np.full(2, np.nan)
    if not np.all(np.isfinite(a) & (a > 0)) or (square and not math.isclose(*a, rel_tol=1e-6)):
        allowed = "equal x and y values (square pixels)" if square else "two positive numbers"
        raise ConfigError(key, value, f"a positive number or [x, y] ({unit}), {allowed}")
    return a.astype(np.float64)


def _ints(key: str, value: Any, n: int, names: str) -> list[int] | None:
    if value is not None and not (isinstance(value, list | tuple) and len(value) == n and all(
            isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value)):
        raise ConfigError(key, value, f"{names} positive integers")
    return None if value is None else [int(i) for i in value]


def _check_optics(c: ImportConfig) -> None:
    m, s = c.microscope, c.simulation
    _number("microscope.energy", m.energy, "a finite positive energy (eV)")
    _number("microscope.semiangle", m.semiangle, "a finite positive angle (mrad)")
    _number("microscope.source_size", m.source_size, "a FWHM >= 0 Å", lambda x: x >= 0)
    _number("microscope.defocus", m.defocus, "a finite defocus (Å)", lambda x: True)
    for name, value in dict(m.aberrations or {}).items():
        if name not in ABERRATIONS:
            raise ConfigError(f"microscope.aberrations.{name}", value,
                              f"a polar coefficient of {list(ABERRATIONS)} (C10: use defocus)")
        _number(f"microscope.aberrations.{name}", value, "a finite number", lambda x: True)
    for key in ("potential_sampling", "slice_thickness"):
        if getattr(s, key) is not None:
            _number(f"simulation.{key}", getattr(s, key), "a finite positive length (Å)")
    if s.parametrization is not None and s.parametrization not in PARAMETRIZATIONS:
        raise ConfigError("simulation.parametrization", s.parametrization,
                          f"one of {PARAMETRIZATIONS}")


def _tilts(c: ImportConfig, read: Reader) -> np.ndarray:
    t = c.tilts
    if (t.euler is None) == (t.angles is None):
        raise ConfigError("tilts", to_plain(dataclasses.asdict(t)), "exactly one of euler, angles")
    key = "tilts.euler" if t.euler is not None else "tilts.angles"
    e = read(key, t.euler if t.euler is not None else t.angles)
    if t.euler is not None:
        e = _finite(key, e, "[T, 3] (phi, theta, psi) degrees", e.ndim == 2 and e.shape[1] == 3)
    else:
        e = _finite(key, e, "[T] degrees", e.ndim == 1)
        e = np.stack([np.zeros_like(e), e, np.zeros_like(e)], axis=1)
    if len(e) == 0 or np.ptp(e[:, 1]) > 180.0:
        raise ConfigError(key, f"{len(e)} tilts, span {np.ptp(e[:, 1]) if len(e) else 0}°",
                          "at least one tilt, a tilt span of at most 180°")
    return e


def _measurement(key: str, a: np.ndarray, t: int, scan: list | None, pattern: bool) -> np.ndarray:
    """``[T, sx, sy(, k, k)]`` float32 from ``[T, sx, sy(, k, k)]`` or ``[T, P(, k, k)]``."""
    tail = 2 if pattern else 0
    shape = "[T, sx, sy, kx, ky] or [T, P, kx, ky], square patterns" if pattern \
        else "[T, sx, sy] or [T, P]"
    ok = a.ndim in (2 + tail, 3 + tail) and (not pattern or a.shape[-1] == a.shape[-2] > 0)
    a = _finite(key, a, shape, ok, np.float32)
    if a.shape[0] != t:
        raise ConfigError(key, f"{a.shape[0]} tilts", f"{t} tilts, as in tilts")
    if a.ndim == 3 + tail:
        if scan is not None and list(a.shape[1:3]) != list(scan):
            raise ConfigError(key, f"scan {list(a.shape[1:3])}",
                              f"the scan [sx, sy] = {list(scan)} (scan.shape or the other array)")
        return a
    if scan is None or int(np.prod(scan)) != a.shape[1]:
        raise ConfigError("scan.shape", scan, f"[sx, sy] with sx·sy = {a.shape[1]} ({key})")
    return a.reshape(t, *scan, *a.shape[2:])


def _positions(c: ImportConfig, read: Reader, t: int, sxy: tuple[int, int],
               extent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nominal positions ``[T, P, 2]`` absolute in the cell and the scan step ``[2]`` Å."""
    s, p = c.scan, sxy[0] * sxy[1]
    origin = inline("scan.origin", s.origin)
    origin = _finite("scan.origin", origin, "[x, y] Å", origin.shape == (2,))
    if (s.positions is None) == (s.start is None):
        raise ConfigError("scan.positions", s.positions, "an array of positions, or scan.start "
                                                         "+ scan.step (exactly one)")
    step = None if s.step is None else _pair("scan.step", s.step, "Å")
    if s.positions is not None:
        pos = read("scan.positions", s.positions)
        pos = _finite("scan.positions", pos, f"[T, P, 2] or [P, 2] Å with T = {t}, P = {p}",
                      pos.shape in ((t, p, 2), (p, 2)))
        pos = np.broadcast_to(pos, (t, p, 2)).copy()
    else:
        start = inline("scan.start", s.start)
        start = _finite("scan.start", start, "[x, y] Å", start.shape == (2,))
        if step is None:
            raise ConfigError("scan.step", None, "the raster step (Å) with scan.start")
        xs, ys = (start[i] + step[i] * np.arange(sxy[i]) for i in range(2))
        grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        pos = np.repeat(grid[None], t, axis=0)
    pos = pos + origin
    lo, hi = pos.reshape(-1, 2).min(0), pos.reshape(-1, 2).max(0)
    if np.any(lo < -1e-9) or np.any(hi > extent[:2] + 1e-9):
        raise ConfigError("scan.positions", f"x, y in [{lo.round(3).tolist()}, "
                          f"{hi.round(3).tolist()}] Å", f"positions absolute in the cell [0, "
                          f"{extent[0]:g}] x [0, {extent[1]:g}] Å (shift them with scan.origin)")
    if step is None:  # the mean spacing of the first tilt's raster along x and along y
        g = pos[0].reshape(*sxy, 2)
        d = [np.abs(np.diff(g[..., i], axis=i)).mean() if sxy[i] > 1 else 0.0 for i in (0, 1)]
        d = [d[0] or d[1], d[1] or d[0]]
        if not all(x > 0 for x in d):
            raise ConfigError("scan.step", None, "the scan step (Å): it cannot be estimated")
        step = np.asarray(d)
    return pos, step


def _grid(c: ImportConfig, dk: np.ndarray | None, potential: np.ndarray | None,
          ) -> tuple[float, tuple[int, int, int]]:
    """Voxel (Å) and reconstruction grid ``(nz, nx, ny)``: nx = ny = 1/(dk v) with patterns."""
    v = _number("grid.voxel_size", c.grid.voxel_size, "a finite positive voxel size (Å)")
    shape = _ints("grid.shape", c.grid.shape, 3, "[nz, nx, ny]")
    pot_shape = None if potential is None or potential.ndim != 3 else list(potential.shape)
    if dk is not None:
        d = float(dk[0])
        n_real = 1.0 / (d * v)
        n = int(round(n_real))
        if n < 1 or abs(n * d * v - 1.0) > 1e-6:
            near = [1.0 / (m * d) for m in (max(1, math.floor(n_real)), math.ceil(n_real))]
            raise ConfigError("grid.voxel_size", v, f"a voxel v with 1/(dk v) integral: the "
                              f"detector sampling dk = {d:.8g} 1/Å makes the cell 1/dk = "
                              f"{1 / d:.8g} Å, and 1/(dk v) = {n_real:.6f} is not a whole "
                              f"number of voxels; e.g. v = {near[0]:.8g} or {near[1]:.8g} Å")
        if shape is not None and shape[1:] != [n, n]:
            raise ConfigError("grid.shape", shape, f"[nz, {n}, {n}]: the cell 1/dk = "
                              f"{1 / d:.6g} Å has {n} voxels of {v} Å")
        shape = shape or [pot_shape[0] if pot_shape else n, n, n]
    shape = shape or pot_shape
    if shape is None:
        raise ConfigError("grid.shape", None, "[nz, nx, ny]: without patterns or a truth "
                                              "potential the cell must be given")
    return v, (shape[0], shape[1], shape[2])


def _truth(c: ImportConfig, read: Reader, t: int, p: int, out: dict[str, np.ndarray]) -> None:
    """Atoms and true geometry, where given, into ``out``."""
    tr = c.truth
    if (tr.positions is None) != (tr.numbers is None):
        raise ConfigError("truth.numbers" if tr.numbers is None else "truth.positions", None,
                          "truth.positions and truth.numbers together")
    if tr.positions is not None:
        pos = read("truth.positions", tr.positions)
        pos = _finite("truth.positions", pos, "[N, 3] Å", pos.ndim == 2 and pos.shape[1] == 3)
        ref = isinstance(tr.numbers, str) and tr.numbers not in atomic_numbers
        nums = read("truth.numbers", tr.numbers) if ref else np.asarray(
            tr.numbers if isinstance(tr.numbers, list) else [tr.numbers], dtype=object)
        nums = np.asarray([atomic_numbers.get(z, -1) if isinstance(z, str) else z
                           for z in nums.ravel()], dtype=np.float64).reshape(nums.shape)
        if nums.shape != (len(pos),) or not np.all((nums >= 1) & (nums <= 118)) \
                or not np.all(nums == np.rint(nums)):
            raise ConfigError("truth.numbers", f"shape {list(nums.shape)}",
                              f"[{len(pos)}] atomic numbers 1..118 or element symbols")
        out["truth/positions"], out["truth/numbers"] = pos, nums.astype(np.int64)
    origin = inline("scan.origin", c.scan.origin)
    for key, name, shape in (("euler", "euler_deg", (t, 3)), ("shifts", "shifts", (t, 2)),
                             ("scan_positions", "positions", (t, p, 2))):
        if getattr(tr, key) is not None:
            a = read(f"truth.{key}", getattr(tr, key))
            a = _finite(f"truth.{key}", a, f"shape {list(shape)}", a.shape == shape)
            out[f"geometry/{name}"] = a + origin if key == "scan_positions" else a


def _potential(c: ImportConfig, pot: np.ndarray, v: float, shape: tuple) -> dict[str, Any]:
    """The truth potential's attributes, after checking that it lies on the grid."""
    _finite("truth.potential", pot, f"[nz, nx, ny] = {list(shape)}, the grid", pot.shape == shape)
    pv = c.truth.potential_voxel_size if c.truth.potential_voxel_size is not None else v
    if not math.isclose(_number("truth.potential_voxel_size", pv, "a voxel (Å)"), v,
                        rel_tol=1e-6):
        raise ConfigError("truth.potential_voxel_size", pv, f"grid.voxel_size = {v} Å: the "
                          "truth is scored on the reconstruction grid (resample it first)")
    o = c.truth.potential_origin
    if o is not None and not (np.shape(o) == (3,) and np.allclose(o, [0, 0, v / 2], atol=1e-6 * v)):
        raise ConfigError("truth.potential_origin", o, f"[0, 0, {v / 2}] Å: voxel [k, i, j] of "
                                                       "the grid is at (i v, j v, (k + 1/2) v)")
    return {"voxel_size": v, "origin": [0.0, 0.0, v / 2], "unit": "V"}


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
        payload = {"format_version": store.FORMAT_VERSION, "meta": self.meta, "attrs": self.attrs,
                   "arrays": {k: array_digest(a) for k, a in sorted(self.arrays.items())}}
        text = json.dumps(to_plain(payload), sort_keys=True, default=str)
        return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]


def _detector(c: ImportConfig) -> np.ndarray:
    """Reciprocal sampling ``[2]`` (1/Å) of the patterns."""
    d = c.detector
    if (d.angular_sampling is None) == (d.reciprocal_sampling is None):
        raise ConfigError("detector.angular_sampling", d.angular_sampling, "exactly one of "
                          "detector.angular_sampling (mrad) or detector.reciprocal_sampling "
                          "(1/Å) with diffraction")
    if d.reciprocal_sampling is not None:
        return _pair("detector.reciprocal_sampling", d.reciprocal_sampling, "1/Å", True)
    ang = _pair("detector.angular_sampling", d.angular_sampling, "mrad", True)
    return ang * 1e-3 / wavelength(float(c.microscope.energy))


def _adf(c: ImportConfig, extent_x: float) -> None:
    d, s = c.detector, c.simulation
    inner = _number("detector.adf_inner", d.adf_inner, "an angle >= 0 mrad (with haadf)",
                    lambda x: x >= 0)
    outer = _number("detector.adf_outer", d.adf_outer, "an angle > adf_inner (mrad, with haadf)")
    if not inner < outer:
        raise ConfigError("detector.adf_inner", inner, "0 <= adf_inner < adf_outer")
    if d.adf_defocus is not None:
        _number("detector.adf_defocus", d.adf_defocus, "a finite defocus in Å", lambda x: True)
    if s.potential_sampling is not None:
        cutoff = antialias_cutoff_mrad(float(c.microscope.energy), s.potential_sampling, extent_x)
        if outer > cutoff:
            raise ConfigError("detector.adf_outer", outer, f"an angle in (0, {cutoff:.2f}] mrad,"
                              f" the antialias limit of simulation.potential_sampling = "
                              f"{s.potential_sampling} Å")


def assemble(c: ImportConfig, read: Reader = inline) -> Imported:
    """Read (``read(field, value)``), check and place on the reconstruction grid every array of
    ``c``. Raises :class:`ConfigError` naming the field, before anything is written."""
    _check_optics(c)
    euler = _tilts(c, read)
    t, me, m, s = len(euler), c.measurements, c.microscope, c.simulation
    if me.diffraction is None and me.haadf is None:
        raise ConfigError("measurements", None, "diffraction and/or haadf")
    scan = _ints("scan.shape", c.scan.shape, 2, "[sx, sy]")
    measured: dict[str, np.ndarray] = {}
    for kind in ("diffraction", "haadf"):
        if getattr(me, kind) is not None:
            a = read(f"measurements.{kind}", getattr(me, kind))
            measured[kind] = _measurement(f"measurements.{kind}", a, t, scan, kind == "diffraction")
            scan = list(measured[kind].shape[1:3])
    assert scan is not None
    dk = _detector(c) if "diffraction" in measured else None
    if dk is not None and not c.detector.fftshifted:
        measured["diffraction"] = np.fft.fftshift(measured["diffraction"], axes=(-2, -1))
    pot = read("truth.potential", c.truth.potential) if c.truth.potential is not None else None
    v, shape = _grid(c, dk, pot)
    extent = np.asarray([shape[1] * v, shape[2] * v, shape[0] * v])
    if "haadf" in measured:
        _adf(c, float(extent[0]))
    sxy = (int(scan[0]), int(scan[1]))
    positions, step = _positions(c, read, t, sxy, extent)
    arrays = {"geometry/euler_nominal_deg": euler, "geometry/positions_nominal": positions}
    attrs: dict[str, dict[str, Any]] = {}
    scale: dict[str, float | None] = {}
    for kind, a in measured.items():
        e_key = "electrons_per_position" if kind == "diffraction" else \
            "haadf_electrons_per_position"
        e = getattr(me, e_key)
        if e is not None:
            a = a / np.float32(_number(f"measurements.{e_key}", e, "a positive electron count"))
        arrays[f"measurements/{kind}"], scale[kind] = a.astype(np.float32, copy=False), e
    _truth(c, read, t, sxy[0] * sxy[1], arrays)
    if pot is not None:
        attrs["truth/potential"] = _potential(c, pot, v, shape)
        arrays["truth/potential"] = pot.astype(np.float32)
    haadf = "haadf" in measured
    meta = {
        "source": "import", "name": c.name, "energy_eV": float(m.energy),
        "semiangle_mrad": float(m.semiangle), "defocus_A": float(m.defocus),
        "aberrations": dict(m.aberrations or {}), "source_size_A": float(m.source_size),
        "scan_step_A": step.tolist(), "scan_shape": list(sxy),
        "detector_shape": list(measured["diffraction"].shape[-2:]) if dk is not None else None,
        "angular_sampling_mrad": None if dk is None else (dk * 1e3 * wavelength(m.energy)).tolist(),
        "reciprocal_sampling_invA": None if dk is None else dk.tolist(),
        "potential_sampling_A": s.potential_sampling, "slice_thickness_A": s.slice_thickness,
        "parametrization": s.parametrization, "num_configurations": s.num_configurations,
        "voxel_size_A": v, "origin_xyz_A": [0.0, 0.0, v / 2], "grid_shape": list(shape),
        "adf_mrad": [float(c.detector.adf_inner), float(c.detector.adf_outer)] if haadf else None,
        "adf_defocus_A": None if not haadf else float(
            c.detector.adf_defocus if c.detector.adf_defocus is not None else m.defocus),
        "measured_electrons_per_position": scale,
    }
    return Imported(arrays, attrs, meta, to_plain(c), dict(getattr(read, "sources", {})))


def write_import(imp: Imported, cache_dir: str | Path, yaml_text: str = "",
                 yaml_path: str = "") -> tuple[Dataset, bool]:
    """Write ``imp`` into the cache atomically (temporary directory, manifest, rename, under
    the key's lock). Returns the dataset and whether it was written (False: already there)."""
    root = store.check_cache_dir(cache_dir)
    key = imp.key()
    path = root / key
    if (found := store._open_valid(path)) is not None:
        return found, False
    with store._locked(root / f".{key}.lock"):
        if (found := store._open_valid(path)) is not None:
            return found, False
        for orphan in root.glob(f".{key}.*"):
            if orphan.is_dir():  # left by a killed writer of this key: we hold its lock
                shutil.rmtree(orphan, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            g = zarr.open_group(store=str(tmp), mode="w")
            for name in ("measurements", "geometry", "truth"):
                g.create_group(name)
            for name, a in imp.arrays.items():
                group, _, leaf = name.partition("/")
                store._put(g[group], leaf, a).attrs.update(imp.attrs.get(name, {}))
            record = {"yaml_path": yaml_path, "yaml": yaml_text, "sources": imp.sources}
            g.attrs.update({"format": store.FORMAT, "format_version": store.FORMAT_VERSION,
                            "key": key, "meta": to_plain(imp.meta), "config": imp.config,
                            "provenance": provenance() | {"import": to_plain(record)}})
            (tmp / store.MANIFEST).write_text(json.dumps(store._manifest(tmp)))
            try:
                os.rename(tmp, path)
            except OSError:
                if not path.exists():  # a concurrent writer won the race: keep its entry
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Dataset(path), True


__all__ = ["ImportConfig", "Imported", "Reader", "SECTIONS", "array_digest", "assemble",
           "import_config", "inline", "schema_text", "write_import"]
