"""Helpers of ``tests/test_configs.py``: the option files of ``conf/`` and the composed app
(test helper, not a test module)."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import typing
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.schema import DEVICES, AppConfig, DeviceConfig, register_configs
from reconstruct.variants import variant_params
from simulate.config import NoiseConfig
from simulate.models import MODELS
from simulate.models.registry import coerce_sample
from simulate.pipeline import SECTIONS, prepare, simulation_config
from simulate.validate import validate_noise

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
Key = tuple[str, ...]  # a path of keys into a nested config: ("tilts", "range")

# `size` is not chosen on the command line: config.yaml selects `size: ${sample}_${scale}`.
DERIVED = {"size"}
# The option checks compose with `experiment=none` (the single job, which fixes nothing):
# the default experiment (`algorithms`) and the others override groups (`override /tilts:
# full`) and fix values (ordering: `tilts.count: 8`), so an option's values would be checked
# against whatever the default study happens to fix. Experiments are checked on their own.
NO_EXPERIMENT = "none"
# The ci preset (the default scale, cheap to build) is where `prepare` builds the model.
PREPARE_SCALE = "ci"

# Keys of an option that a later default of config.yaml (scale and size come after the groups,
# experiment last) sets on purpose, as found by composing every option; anything else that a
# later file sets on an option's key fails, naming both files.
LATER_OVERRIDES: dict[str, tuple[Key, ...]] = {
    # a preset sizes the job: the number of tilts over the tilt option's range (ci 3, small 8,
    # paper 20) and the scan step (ci 1.6 Å ... paper 0.4 Å); so the tilts options' `count: 20`
    # and raster's `step: 0.4` (paper 001's) are always replaced by the preset's
    "scale": (("tilts", "count"), ("scan", "step")),
    # a size file sizes its sample for its preset (cell, diameter, n_atoms, ...). Size files of
    # the samples of other papers also set microscope, tilts and scan keys (pt_decahedron:
    # paper 004's -72°..70°); the option checks do not meet them, as they compose with the
    # default sample (cuau), whose size files set sample keys only.
    "size": (("sample",),),
}

# Options that are exactly their schema's defaults by design: the schema defaults are paper
# 001's (simulate/config.py, experiments/schema.py), and each of these options is the group's
# default choice in config.yaml, stated in full so that a sweep can switch back to it.
SCHEMA_DEFAULT_BY_DESIGN: dict[str, str] = {
    "microscope/paper001": "300 kV, 21 mrad, zero defocus: MicroscopeConfig's defaults",
    "scan/raster": "0.4 Å raster over the whole cell: ScanConfig's defaults",
    "tilts/full": "20 tilts over 180° about y: TiltConfig's defaults",
    "noise/none": "noise-free (dose inf): NoiseConfig's defaults",
    "device/auto": "CUDA when available: DeviceConfig's default",
    "compute/local": "this process, in memory, one device: ComputeConfig's defaults",
}
# Options that set nothing by design.
EMPTY_BY_DESIGN: dict[str, str] = {
    "experiment/none": "the single job: fixes nothing, sweeps nothing",
}


# ---------------------------------------------------------------------------------------------
# the files


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _groups() -> list[str]:
    return sorted(p.name for p in CONF.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _path(group: str, option: str) -> Path:
    return CONF / group / f"{option}.yaml"


def _all_options(groups: list[str] | None = None) -> list[str]:
    return [f"{g}/{o}" for g in (groups or _groups()) for o in _options(g)]


def _split(option_id: str) -> tuple[str, str]:
    group, option = option_id.split("/")
    return group, option


@lru_cache
def _load(path: Path) -> dict[str, Any]:
    """The file as OmegaConf reads it (YAML 1.2 floats such as ``2.0e6``), unresolved."""
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert isinstance(data, dict), f"{_rel(path)}: not a mapping"
    return data


def _package(path: Path, group: str) -> Key:
    """Where the file's keys land: its ``# @package`` header, else its group."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*@package\s+(\S+)", line)
        if m:
            return () if m.group(1) == "_global_" else tuple(m.group(1).split("."))
    return (group,)


def _content(group: str, option: str) -> dict[str, Any]:
    """What the option sets, besides its defaults list."""
    return {k: v for k, v in _load(_path(group, option)).items() if k != "defaults"}


def _leaves(data: Any, prefix: Key = ()) -> Iterator[tuple[Key, Any]]:
    """Leaf values of a nested mapping by key path; lists and empty mappings are leaves."""
    if isinstance(data, dict) and (data or not prefix):
        for k, v in data.items():
            yield from _leaves(v, (*prefix, str(k)))
    else:
        yield prefix, data


def _set_leaves(group: str, option: str) -> dict[Key, Any]:
    """The leaves the option sets, as absolute key paths of the composed config."""
    package = _package(_path(group, option), group)
    return {(*package, *k): v for k, v in _leaves(_content(group, option))}


def _dotted(key: Key) -> str:
    return ".".join(key)


def _same(a: Any, b: Any) -> bool:
    """Equality of config values: enums by name, bools only with bools, inf with inf."""
    if isinstance(b, enum.Enum):
        b = b.name
    if isinstance(a, enum.Enum):
        a = a.name
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


_MISSING = object()


def _get(data: Any, key: Key) -> Any:
    for k in key:
        if not isinstance(data, dict) or k not in data:
            return _MISSING
        data = data[k]
    return data


def _defaults_list(path: Path) -> list[Any]:
    return list(_load(path).get("defaults") or [])


@lru_cache
def _app_defaults() -> tuple[list[str], dict[str, str]]:
    """config.yaml's defaults: the order of groups (``_self_`` included) and their choices."""
    order: list[str] = []
    choices: dict[str, str] = {}
    for entry in _defaults_list(CONF / "config.yaml"):
        if isinstance(entry, dict):
            ((group, choice),) = entry.items()
            order.append(group)
            choices[group] = str(choice)
        elif entry == "_self_":
            order.append(entry)
    return order, choices


def _schema_defaults(schema: type) -> dict[str, Any]:
    return dataclasses.asdict(schema())


def _app_schema(group: str) -> type | None:
    """The shared schema of a group's section in :class:`AppConfig` (None: one per option)."""
    hint = typing.get_type_hints(AppConfig).get(group)
    return hint if dataclasses.is_dataclass(hint) else None


def _default_of(key: Key, sample: str) -> Any:
    """The schema default of an absolute key (sample keys from that sample's schema)."""
    if key[0] == "sample":
        return _get(_schema_defaults(MODELS[sample][0]), key[1:])
    return _get(dataclasses.asdict(AppConfig(sample=None, algorithm=None)), key)


# ---------------------------------------------------------------------------------------------
# the composed app


@dataclasses.dataclass(frozen=True)
class Composed:
    raw: dict[str, Any]  # the app's keys, interpolations unresolved
    app: dict[str, Any]  # the app's keys, resolved (what the job receives)
    hydra: dict[str, Any]  # the hydra node, unresolved
    choices: dict[str, str]  # group -> option, as Hydra chose them


@lru_cache
def _compose(overrides: tuple[str, ...]) -> Composed:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    keys = [k for k in cfg if k != "hydra"]
    raw = {k: OmegaConf.to_container(cfg[k], resolve=False) if OmegaConf.is_config(cfg[k])
           else cfg[k] for k in keys}
    app = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
           else cfg[k] for k in keys}
    hydra_node = OmegaConf.to_container(cfg.hydra, resolve=False)
    choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items()}
    return Composed(raw, app, hydra_node, choices)


def _composed_for(group: str, option: str) -> Composed:
    """The app composed to check one option; a failure to compose names the file."""
    overrides = _overrides(group, option)
    try:
        return _compose(overrides)
    except Exception as err:  # any refusal, named with the file
        pytest.fail(f"{_rel(_path(group, option))}: `{' '.join(overrides)}` does not compose: "
                    f"{type(err).__name__}: {err}")


def _overrides(group: str, option: str) -> tuple[str, ...]:
    """How the app is composed to check one option (sorted, so that equal ones share a cache)."""
    if group == "experiment":
        return (f"experiment={option}",)
    if group == "size":
        sample, scale = _size_parts(option)
        ov = {"sample": sample, "scale": scale}
    else:
        ov = {group: option}
    ov.setdefault("scale", _app_defaults()[1]["scale"])
    ov["experiment"] = NO_EXPERIMENT
    return tuple(sorted(f"{k}={v}" for k, v in ov.items()))


def _size_parts(option: str) -> tuple[str, str]:
    for sample in _options("sample"):
        for scale in _options("scale"):
            if option == f"{sample}_{scale}":
                return sample, scale
    raise AssertionError(f"conf/size/{option}.yaml is not conf/size/<sample>_<scale>.yaml for a "
                         f"sample of {_options('sample')} and a scale of {_options('scale')}")


def _later_files(group: str, c: Composed) -> list[tuple[str, Path]]:
    """The option files composed after ``group``'s in config.yaml, in order."""
    order = _app_defaults()[0]
    later = order[order.index(group) + 1:]
    return [(g, _path(g, c.choices[g])) for g in later
            if g != "_self_" and c.choices.get(g) not in (None, "None")]


@lru_cache
def _validate(overrides: tuple[str, ...]) -> None:
    """The app's validation of a composed config, and on the ci scale the model is built."""
    c = _compose(overrides)
    app = c.app
    variant_params(app["algorithm"])
    coerce_sample(app["sample"])
    sim = simulation_config({k: app[k] for k in ("sample", *SECTIONS)})
    validate_noise(NoiseConfig(**app["noise"]))
    device = DeviceConfig(**app["device"])
    assert device.name in DEVICES, f"device.name = {device.name!r}: one of {DEVICES}"
    if c.choices["scale"] == PREPARE_SCALE:
        assert len(prepare(sim)) > 0  # builds the model, validates everything against it
