"""``ptychobench-import METADATA.yaml [--cache-dir DIR]``: bring an external tilt series into
the dataset cache.

The YAML (schema: :class:`simulate.imports.ImportConfig`; ``--schema`` prints it; reference in
docs/dataset_format.md, "Importing your own data") names its arrays by path relative to the
YAML's folder: ``file.npy``, ``file.npz:key``, ``file.zarr`` or ``file.zarr:/path/in/group``, and
``file.h5:/path/in/file`` (HDF5 through h5py, also ``.hdf5``, ``.hdf``, ``.emd``, ``.nxs``).
Small arrays (tilt angles, a few atoms) may be written inline. The entry's key
(``import-<digest>``) and path are printed; importing the same content again finds it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
import zarr

from simulate.errors import ConfigError
from simulate.imports import (
    array_digest,
    assemble,
    import_config,
    inline,
    schema_text,
    write_import,
)
from simulate.store import Dataset

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".emd", ".nxs")
REF = re.compile(r"^(?P<file>.*?\.(?:npy|npz|zarr|h5|hdf5|hdf|emd|nxs))(?::(?P<inner>.*))?$",
                 re.IGNORECASE)


def path_digest(path: Path) -> str:
    """BLAKE2b-128 of a file, or of a directory's files (relative names and contents)."""
    h = hashlib.blake2b(digest_size=16)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(path) if p != path else "").encode())
        with open(p, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _read_file(key: str, ref: str, path: Path, inner: str | None) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.keys())
            inner = names[0] if inner is None and len(names) == 1 else inner
            if inner not in names:
                raise ConfigError(key, ref, f"file.npz:key with key one of {names}")
            return z[inner]
    if suffix == ".zarr":
        node = zarr.open(store=str(path), mode="r")
        try:
            node = node[inner] if inner else node
        except KeyError as exc:
            raise ConfigError(key, ref, "file.zarr:/path naming an array in the store") from exc
        if not isinstance(node, zarr.Array):
            raise ConfigError(key, ref, "file.zarr:/path naming an array, not a group")
        return node[...]
    try:
        import h5py
    except ImportError as exc:
        raise ConfigError(key, ref, "an HDF5 file read with h5py: pip install h5py") from exc
    with h5py.File(path, "r") as h5:
        node = h5.get(inner) if inner else None
        if not isinstance(node, h5py.Dataset):
            raise ConfigError(key, ref, "file.h5:/path naming a dataset in the file")
        return node[...]


class FileReader:
    """Reads the arrays of an import YAML: inline values, or ``file[:name]`` relative to
    ``base``; every file read is recorded in :attr:`sources` (path, file and array digests)."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.sources: dict[str, dict[str, Any]] = {}

    def __call__(self, key: str, ref: Any) -> np.ndarray:
        if not isinstance(ref, str):
            return inline(key, ref)
        m = REF.match(ref.strip())
        if m is None:
            raise ConfigError(key, ref, "file.npy, file.npz:key, file.zarr[:/path] or "
                                        f"file.h5:/path (HDF5: {', '.join(HDF5_SUFFIXES)})")
        path = (self.base / m["file"]).expanduser()
        if not path.exists():
            raise ConfigError(key, ref, f"an existing file ({path} is missing; paths are "
                                        "relative to the YAML's folder)")
        arr = np.asarray(_read_file(key, ref, path, (m["inner"] or "").strip("/") or None))
        self.sources[key] = {"ref": ref, "path": str(path.resolve()),
                             "file_blake2b": path_digest(path),
                             "array_blake2b": array_digest(arr), "shape": list(arr.shape),
                             "dtype": arr.dtype.str}
        return arr


def import_series(metadata: str | Path, cache_dir: str | Path) -> tuple[Dataset, bool]:
    """Import the series described by the YAML file ``metadata`` into ``cache_dir``; returns the
    dataset and whether it was written now (False: the same content was imported before)."""
    path = Path(metadata).expanduser()
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("metadata", str(path), f"valid YAML ({exc})") from exc
    imp = assemble(import_config(data), FileReader(path.parent))
    return write_import(imp, cache_dir, text, str(path.resolve()))


def default_cache_dir() -> str:
    return os.environ.get("PTYCHOBENCH_CACHE", "~/.cache/ptychobench")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="ptychobench-import",
        description="Bring an external 4D-STEM and/or ADF tilt series into the dataset cache.")
    ap.add_argument("metadata", type=Path, nargs="?", help="the import YAML")
    ap.add_argument("--cache-dir", default=None,
                    help="dataset cache (default: $PTYCHOBENCH_CACHE or ~/.cache/ptychobench)")
    ap.add_argument("--schema", action="store_true", help="print the YAML keys and exit")
    args = ap.parse_args(argv)
    if args.schema:
        print(schema_text())
        return
    if args.metadata is None:
        ap.error("METADATA.yaml is required")
    try:
        ds, written = import_series(args.metadata, args.cache_dir or default_cache_dir())
    except (ConfigError, OSError) as exc:
        print(f"ptychobench-import: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print("imported" if written else "already in the cache (same content)")
    print(f"key: {ds.key}")
    print(f"path: {ds.path}")


if __name__ == "__main__":
    main()
