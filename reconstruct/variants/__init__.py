"""Reconstruction variants, registered by name in :data:`VARIANTS`.

Adding a method is one module here (a parameter dataclass, a ``run`` that composes the shared
pieces and calls :func:`reconstruct.fit.fit`, and one ``register_variant`` line), one
``conf/algorithm/<name>.yaml`` and its import below; see ``docs/adding_a_method.md``.
"""

from reconstruct.variants import linear, mset  # noqa: F401  (register)
from reconstruct.variants.base import VARIANTS, Variant, register_variant, variant_params

__all__ = ["VARIANTS", "Variant", "register_variant", "variant_params"]
