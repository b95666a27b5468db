"""The dataset store: one zarr (v3) group per dataset, in a content-addressed cache.

Layout of ``<cache_dir>/<key>/`` (documented in docs/dataset_format.md):

- ``measurements/diffraction`` ``[T, sx, sy, kx, ky]`` float32, noise-free, per incident electron
- ``measurements/haadf`` ``[T, sx, sy]`` float32 (when the ADF detector was on)
- ``geometry/{euler_deg, euler_nominal_deg, shifts, positions, positions_nominal}``
- ``truth/{positions, numbers, potential, ...}``; ``truth/potential`` carries ``voxel_size`` and
  ``origin`` attributes
- root attributes: ``format``, ``format_version``, ``key``, ``meta`` (sampling, energy, ...),
  ``config`` (the resolved simulation config) and ``provenance``
- ``manifest.json``: every file with its size and BLAKE2b digest, written last.

An entry is written into a temporary sibling directory and renamed into place, so a killed
writer leaves no entry (its temporary directory is removed by the next writer of the key).
Writers of one key hold the key's file lock (``.<key>.lock``), so concurrent runs simulate it
once. On open the manifest is checked; a missing, truncated or altered file makes the entry
invalid, and :func:`get_dataset` rebuilds it, saying so in one line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from ase import Atoms

from simulate.compute import executor
from simulate.config import ComputeConfig, NoiseConfig, SimulationConfig
from simulate.errors import ConfigError
from simulate.noise import apply_dose, electrons_per_position
from simulate.provenance import package_versions, provenance
from simulate.tiltseries import TiltSeries

FORMAT = "ptychobench-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KEY_PACKAGES = ("abtem", "ase", "numpy", "zarr")


class CorruptEntry(RuntimeError):
    """A cache entry failed its manifest check."""


def to_plain(obj: Any) -> Any:
    """Dataclasses / mappings / numpy scalars → JSON-able plain Python."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def cache_key(cfg: SimulationConfig) -> str:
    """Hash of the resolved simulation config, the format version and the simulating packages."""
    payload = {
        "config": to_plain(cfg),
        "format_version": FORMAT_VERSION,
        "versions": package_versions(KEY_PACKAGES),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(root: Path) -> dict[str, list]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(root)): [p.stat().st_size, _digest(p)] for p in files}


def verify_entry(root: Path, full: bool = True) -> None:
    """Raise :class:`CorruptEntry` unless every file matches the manifest (size, and digest when
    ``full``) and no listed file is missing."""
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise CorruptEntry(f"{root}: no manifest (incomplete write)")
    try:
        listed = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptEntry(f"{root}: unreadable manifest") from exc
    for rel, (size, digest) in listed.items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != size:
            raise CorruptEntry(f"{root}: {rel} missing or truncated")
        if full and _digest(p) != digest:
            raise CorruptEntry(f"{root}: {rel} does not match its digest")


def _chunks(shape: tuple[int, ...], itemsize: int = 4, target: int = 1 << 24) -> tuple[int, ...]:
    """Chunks of whole patterns/scan rows, about ``target`` bytes each."""
    chunks = list(shape)
    for axis in range(len(shape)):
        if int(np.prod(chunks)) * itemsize <= target:
            break
        chunks[axis] = 1
        if int(np.prod(chunks)) * itemsize < target:
            chunks[axis] = max(1, target // (int(np.prod(chunks)) * itemsize))
            break
    return tuple(int(min(c, s)) for c, s in zip(chunks, shape, strict=True))


def _put(group: zarr.Group, name: str, data: Any, client: Any = None,
         progress: bool = False) -> zarr.Array:
    """Store ``data`` as ``group/name``; a dask array (a lazy simulation) is computed into it
    chunk by chunk (:func:`simulate.compute.store`), its chunks one item of axis 0 (a tilt)."""
    if isinstance(data, da.Array):
        from simulate.compute import store

        itemsize = data.dtype.itemsize
        chunks = (1, *_chunks(data.shape[1:], itemsize)) if data.ndim > 1 else data.shape
        out = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
        store(data, out, client, progress, label=f"abTEM {name}")
        return out
    arr = np.ascontiguousarray(data)
    out = group.create_array(
        name, shape=arr.shape, dtype=arr.dtype, chunks=_chunks(arr.shape, arr.itemsize)
    )
    out[...] = arr
    return out


def _scan_shape(ts: TiltSeries) -> tuple[int, int]:
    data = ts.diffraction if ts.diffraction is not None else ts.haadf
    assert data is not None
    return int(data.shape[1]), int(data.shape[2])


def _meta(ts: TiltSeries, cfg: SimulationConfig, sx_sy: tuple[int, int]) -> dict[str, Any]:
    m = cfg.microscope
    return {
        "energy_eV": m.energy,
        "semiangle_mrad": m.semiangle,
        "defocus_A": m.defocus,
        "aberrations": dict(m.aberrations),
        "source_size_A": m.source_size,
        "scan_step_A": [cfg.scan.step, cfg.scan.step],
        "scan_shape": list(sx_sy),
        "detector_shape": None if ts.diffraction is None else list(ts.diffraction.shape[-2:]),
        "angular_sampling_mrad": ts.angular_sampling.tolist(),
        "reciprocal_sampling_invA": ts.reciprocal_sampling.tolist(),
        "potential_sampling_A": cfg.potential.sampling,
        "slice_thickness_A": cfg.potential.slice_thickness,
        "parametrization": cfg.potential.parametrization,
        "num_configurations": (
            len(ts.extra["snapshots"]) if "snapshots" in ts.extra else cfg.phonons.num_configs
        ),
        "voxel_size_A": ts.voxel_size,
        "origin_xyz_A": ts.origin.tolist(),
        "adf_mrad": [cfg.detector.adf_inner, cfg.detector.adf_outer]
        if ts.haadf is not None
        else None,
        "adf_defocus_A": None if ts.haadf is None else float(
            cfg.detector.adf_defocus if cfg.detector.adf_defocus is not None
            else cfg.microscope.defocus),
    }


def write_dataset(
    path: Path, ts: TiltSeries, atoms: Atoms, cfg: SimulationConfig, key: str,
    client: Any = None, progress: bool = False,
) -> None:
    """Write a complete entry at ``path`` (which must not exist yet) atomically; lazy
    measurements are computed into it chunk by chunk, on ``client``'s cluster if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        g = zarr.open_group(store=str(tmp), mode="w")
        meas, geo, truth = (
            g.create_group("measurements"),
            g.create_group("geometry"),
            g.create_group("truth"),
        )
        if ts.diffraction is not None:
            _put(meas, "diffraction", ts.diffraction, client, progress)
        if ts.haadf is not None:
            _put(meas, "haadf", ts.haadf, client, progress)
        for name in ("euler_deg", "euler_nominal_deg", "shifts", "positions", "positions_nominal"):
            _put(geo, name, getattr(ts, name))
        _put(truth, "positions", atoms.positions)
        _put(truth, "numbers", atoms.numbers.astype(np.int64))
        for name, value in ts.extra.items():
            _put(truth, name, value)
        pot = _put(truth, "potential", ts.potential)
        pot.attrs.update({"voxel_size": ts.voxel_size, "origin": ts.origin.tolist(), "unit": "V"})
        g.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "key": key,
                "meta": to_plain(_meta(ts, cfg, _scan_shape(ts))),
                "config": to_plain(cfg),
                "provenance": provenance(),
            }
        )
        (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp)))
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.exists():  # a concurrent writer may have won the race; keep its entry
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Dataset:
    """A verified dataset on disk. Arrays are read lazily through zarr."""

    def __init__(self, path: Path, verify: bool = True) -> None:
        self.path = Path(path)
        if verify:
            verify_entry(self.path)
        self.group = zarr.open_group(store=str(self.path), mode="r")
        if self.group.attrs.get("format") != FORMAT:
            raise CorruptEntry(f"{self.path} is not a {FORMAT}")
        self.meta: dict[str, Any] = dict(self.group.attrs["meta"])
        self.config: dict[str, Any] = dict(self.group.attrs["config"])
        self.key: str = str(self.group.attrs["key"])

    def array(self, name: str) -> np.ndarray:
        """Read a stored array by its path, e.g. ``truth/positions``."""
        return np.asarray(self.group[name][...])

    @property
    def n_tilts(self) -> int:
        # the nominal angles: an imported series may have no true geometry
        return int(self.group["geometry/euler_nominal_deg"].shape[0])

    @property
    def has_haadf(self) -> bool:
        return "haadf" in self.group["measurements"]

    @property
    def has_diffraction(self) -> bool:
        return "diffraction" in self.group["measurements"]

    def has(self, name: str) -> bool:
        """Whether the stored array ``name`` (e.g. ``truth/potential``) exists."""
        try:
            self.group[name]
        except KeyError:
            return False
        return True

    def electrons_per_position(self, noise: NoiseConfig) -> float:
        """Incident electrons per scan position at ``noise``'s dose (``inf``: noise-free)."""
        return electrons_per_position(noise, self.n_tilts, tuple(self.meta["scan_step_A"]))

    def measurements(
        self,
        noise: NoiseConfig,
        realisation: int = 0,
        kind: str = "diffraction",
        per_electron: bool = False,
    ) -> np.ndarray:
        """Measurements with Poisson noise drawn now: counts per pattern pixel (or ADF counts),
        or with ``per_electron`` the same counts per incident electron (what the models fit).

        ``realisation`` 0 and 1 are the two independent half-sets (seeds s and s + 1).
        With ``noise.dose = inf`` the noise-free intensities per electron are returned.
        """
        electrons = self.electrons_per_position(noise)
        counts = apply_dose(self.array(f"measurements/{kind}"), electrons, noise.seed + realisation)
        return counts / electrons if per_electron and not math.isinf(electrons) else counts


def open_dataset(ref: str | Path, cache_dir: str | Path) -> Dataset:
    """A stored dataset by path, or by key in ``cache_dir`` (e.g. one ``ptychobench-import``
    wrote); :class:`ConfigError` on the ``dataset`` key if neither holds a valid one."""
    path = Path(ref).expanduser()
    if not path.is_dir():
        path = Path(cache_dir).expanduser() / str(ref)
    try:
        return Dataset(path)
    except (CorruptEntry, KeyError, ValueError, OSError) as exc:
        raise ConfigError("dataset", str(ref), f"a dataset directory, or the key of one in "
                          f"cache_dir={cache_dir} ({exc})") from exc


Simulator = Callable[[SimulationConfig], tuple[TiltSeries, Atoms]]


def check_cache_dir(cache_dir: str | Path) -> Path:
    """The cache directory, created if needed; :class:`ConfigError` unless it is writable."""
    path = Path(cache_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError("cache_dir", str(cache_dir),
                          f"a writable directory ({exc.strerror or exc})") from exc
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (``flock``): concurrent runs of one key wait here."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open_valid(path: Path) -> Dataset | None:
    """The entry at ``path`` if it passes its manifest; an invalid one is removed, saying so."""
    if not path.exists():
        return None
    try:
        return Dataset(path)
    except (CorruptEntry, KeyError, ValueError, OSError) as exc:
        print(f"ptychobench cache: rebuilding {path} ({exc})", file=sys.stderr)
        shutil.rmtree(path, ignore_errors=True)
        return None


def get_dataset(cfg: SimulationConfig, cache_dir: str | Path, simulator: Simulator,
                compute: ComputeConfig | None = None, progress: bool = False) -> Dataset:
    """Return the cached dataset for ``cfg``, simulating (once) if absent or invalid, where
    ``compute`` says (a dask cluster is started only when a simulation is needed).

    A valid entry is returned without locking (so a read-only cache works). Otherwise the
    cache directory is checked first, then the key is locked: a concurrent run of the same key
    waits and finds the entry written; temporary directories that a killed writer of this key
    left are removed before simulating.
    """
    path = Path(cache_dir).expanduser() / cache_key(cfg)
    if path.exists() and (found := _open_valid(path)) is not None:
        return found
    root = check_cache_dir(cache_dir)
    with _locked(root / f".{path.name}.lock"):
        if (found := _open_valid(path)) is not None:
            return found
        for orphan in root.glob(f".{path.name}.*"):
            if orphan.is_dir():  # no writer of this key runs now: we hold its lock
                shutil.rmtree(orphan, ignore_errors=True)
        with executor(compute or ComputeConfig()) as client:
            ts, atoms = simulator(cfg)
            write_dataset(path, ts, atoms, cfg, path.name, client, progress)
    return Dataset(path)
