"""The operator registry with all its cases registered (import this in tests).

Machinery and :data:`NOT_OPERATORS`: ``operator_registry.py``; cases: ``operators_wave.py`` and
``operators_volume.py``.
"""

import operators_volume  # noqa: F401  (registers its cases)
import operators_wave  # noqa: F401  (registers its cases)
from operator_registry import (  # noqa: F401
    NOT_OPERATORS,
    REGISTRY,
    Case,
    covered,
    inner,
    names,
    params,
    rand,
    randn,
    register,
)
