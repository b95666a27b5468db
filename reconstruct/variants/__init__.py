"""Reconstruction variants, registered by name in :data:`VARIANTS`."""

from reconstruct.variants import linear, mset  # noqa: F401  (register)
from reconstruct.variants.base import (
    VARIANTS,
    Reconstruction,
    TomoData,
    Variant,
    VariantConfigError,
    register_variant,
    variant_params,
)

__all__ = ["VARIANTS", "Reconstruction", "TomoData", "Variant", "VariantConfigError",
           "register_variant", "variant_params"]
