"""Provenance records: versions, git commit, time. Seeds live in the resolved config."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("ptychobench", "abtem", "ase", "torch", "numpy", "scipy", "zarr", "hydra-core")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change results."""
    out = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: Path | None = None) -> str:
    """The commit of the source checkout (with ``+dirty`` if it has local changes)."""
    where = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-serialisable provenance record."""
    return {
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "config": config,
    }
