"""The model registry: name -> (schema dataclass, builder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ase import Atoms

from simulate.errors import ConfigError


@dataclass
class SampleConfig:
    """Fields every sample has: its registered ``name``, the cubic ``cell`` side in Å (or the
    slab's lateral size, see each builder) and the random ``seed`` of the builder."""

    name: str = ""
    cell: float = 51.2
    seed: int = 0


S = TypeVar("S", bound=SampleConfig)
Builder = Callable[[Any], Atoms]
MODELS: dict[str, tuple[type[SampleConfig], Builder]] = {}


def register_model(
    name: str, schema: type[S]
) -> Callable[[Callable[[S], Atoms]], Callable[[S], Atoms]]:
    """Decorator registering ``builder(cfg: schema) -> Atoms`` under ``name``."""

    def deco(builder: Callable[[S], Atoms]) -> Callable[[S], Atoms]:
        if name in MODELS:
            raise KeyError(f"model '{name}' registered twice")
        MODELS[name] = (schema, builder)
        return builder

    return deco


def schema_for(name: str) -> type[SampleConfig]:
    """The schema dataclass of model ``name``."""
    if name not in MODELS:
        raise ConfigError("sample.name", name, f"one of {sorted(MODELS)}")
    return MODELS[name][0]


def coerce_sample(cfg: SampleConfig | Mapping[str, Any]) -> SampleConfig:
    """Turn a mapping (e.g. a resolved Hydra node) into the model's schema, rejecting unknown
    keys by name."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return cfg  # type: ignore[return-value]
    data = dict(cfg)
    schema = schema_for(str(data.get("name", "")))
    allowed = {f.name for f in dataclasses.fields(schema)}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"sample.{key}", data[key], f"a key of {sorted(allowed)}")
    return schema(**data)


def build_model(cfg: SampleConfig | Mapping[str, Any]) -> Atoms:
    """Build the model described by ``cfg`` and check it is not empty."""
    sample = coerce_sample(cfg)
    atoms = MODELS[sample.name][1](sample)
    if len(atoms) == 0:
        raise ConfigError("sample", dataclasses.asdict(sample), "a model with at least one atom")
    return atoms
