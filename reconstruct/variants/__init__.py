"""Reconstruction variants, registered by name in :data:`VARIANTS`.

Adding a method is one module here (a parameter dataclass, a ``run`` that composes the shared
pieces and calls :func:`reconstruct.fit.fit`, and one ``register_variant`` line), one
``conf/algorithm/<name>.yaml`` and its import below; see ``docs/adding_a_method.md``.

A method from another package needs no change here: it declares an entry point in the group
:data:`PLUGIN_GROUP` (``ptychobench.variants``) naming a module that registers its variants on
import, or a :class:`Variant`; :func:`load_plugins` loads them when this package is imported.
"""

from __future__ import annotations

import importlib.metadata
from types import ModuleType

from reconstruct.variants import e2e, linear, lot, mset, ptycho, sequential  # noqa: F401
from reconstruct.variants.base import VARIANTS, Variant, register_variant, variant_params

PLUGIN_GROUP = "ptychobench.variants"
PLUGIN_VARIANTS: set[str] = set()  # names registered by plugins (selectable by schema default)


def load_plugins() -> list[str]:
    """Load every entry point of :data:`PLUGIN_GROUP`; returns the names of the variants it
    added. A plugin that fails to load is refused with its entry point named."""
    before = set(VARIANTS)
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise ImportError(f"ptychobench plugin {ep.name!r} ({ep.value}) failed to load: "
                              f"{exc}") from exc
        if isinstance(obj, Variant) and obj.name not in VARIANTS:
            register_variant(obj)
        elif not isinstance(obj, Variant | ModuleType):
            raise TypeError(f"ptychobench plugin {ep.name!r} ({ep.value}) is neither a module "
                            f"nor a Variant: {type(obj).__name__}")
    added = sorted(set(VARIANTS) - before)
    PLUGIN_VARIANTS.update(added)
    return added


load_plugins()

__all__ = ["PLUGIN_GROUP", "PLUGIN_VARIANTS", "VARIANTS", "Variant", "load_plugins",
           "register_variant", "variant_params"]
