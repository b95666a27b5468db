"""The variant registry.

A variant is a short composition of the shared physics layer (``reconstruct.*``) and the fit
layer (:func:`reconstruct.fit.fit`). It is registered by name with its parameter schema and the
measurement kinds it needs, so that bad combinations are refused before any compute. It
returns a :class:`reconstruct.result.Reconstruction` of whatever it estimates; the harness
scores every estimate for which the dataset holds a truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconstruct.data import MEASUREMENT_KEYS, MEASUREMENTS, TomoData
from reconstruct.result import Reconstruction
from simulate.errors import ConfigError

Runner = Callable[[TomoData, Any, int, bool], Reconstruction]


@dataclass(frozen=True)
class Variant:
    """A registered variant: its ``schema`` (a dataclass of parameters with a ``name`` field),
    the measurement kinds it ``requires`` (a subset of :data:`MEASUREMENTS`), ``run(data,
    params, seed, progress)`` and an optional ``check(params)`` of parameter combinations
    (raising :class:`ConfigError`)."""

    name: str
    schema: type
    requires: frozenset[str]
    run: Runner
    check: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "requires", frozenset(self.requires))
        unknown = self.requires - set(MEASUREMENTS)
        if unknown or not self.requires:
            raise ValueError(f"variant {self.name!r}: requires {sorted(unknown)} must be a "
                             f"non-empty subset of {MEASUREMENTS}")

    def reconstruct(self, data: TomoData, params: Any, seed: int = 0,
                    progress: bool = False) -> Reconstruction:
        """``run`` after refusing data that lacks a required measurement kind (by the config
        key that records it)."""
        for kind in sorted(self.requires - data.kinds):
            raise ConfigError(MEASUREMENT_KEYS[kind], False,
                              f"true: algorithm '{self.name}' needs the {kind} measurements")
        return self.run(data, params, seed, progress)


VARIANTS: dict[str, Variant] = {}


def add_unique(registry: dict[str, Any], item: Any, kind: str) -> Any:
    """Add ``item`` to ``registry`` under ``item.name``; a name is registered once."""
    if item.name in registry:
        raise KeyError(f"{kind} {item.name!r} registered twice")
    registry[item.name] = item
    return item


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to :data:`VARIANTS` (names are unique)."""
    return add_unique(VARIANTS, variant, "variant")


def variant_params(params: Mapping[str, Any] | Any) -> tuple[Variant, Any]:
    """Look up the variant named in ``params`` and build its schema, refusing unknown keys and
    invalid combinations by name (before any compute)."""
    data = dict(params) if isinstance(params, Mapping) else dataclasses.asdict(params)
    name = data.get("name")
    if name not in VARIANTS:
        raise ConfigError("algorithm.name", name, f"one of {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    allowed = {f.name for f in dataclasses.fields(variant.schema)}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"algorithm.{key}", value, f"a key of {sorted(allowed)}")
    cfg = variant.schema(**data)
    if variant.check is not None:
        variant.check(cfg)
    return variant, cfg
