"""Registry of the linear and differentiable operators of :mod:`reconstruct` (test helper).

One entry per operator *case*: a name, a factory that builds tiny seeded float64/complex128
inputs, the forward callable and, for linear operators, the adjoint callable. The registry
feeds ``test_adjoint`` (``tests/test_reconstruct_adjoints.py``: ``<A x, y> = <x, A* y>`` for
every ``linear`` entry), ``test_gradcheck`` / ``test_gradgradcheck``
(``tests/test_reconstruct_gradients.py``: ``torch.autograd.gradcheck`` for every
``differentiable`` entry) and the completeness test, which fails when a function exported by
``reconstruct.__all__`` is neither covered by an entry nor listed in :data:`NOT_OPERATORS`.
(In the manner of deepinv's operator registry for its physics tests.)

The cases live in ``operators_wave.py`` (scanning, propagation, optics, multislice, losses)
and ``operators_volume.py`` (tomography, the HAADF interaction, Gaussian atoms); this module
holds the machinery. Adding an operator: write a factory returning a :class:`Case` and
decorate it with ``@register("name", <the reconstruct callables it exercises>, linear=..., ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from reconstruct import (
    energy2sigma,
)

F64, C128 = torch.float64, torch.complex128
ENERGY = 200e3  # eV
SAMPLING = (0.2, 0.2)  # Å
SIGMA = energy2sigma(ENERGY)  # rad / (V Å)
#: electrons per pattern: model patterns in counts. With the object in radians of phase this
#: makes the model's Jacobian entries O(1-100), so that gradcheck's atol (scaled by sum(u)
#: sum(v) in fast mode) cannot hide a wrong gradient (see test_gradcheck's 1% check).
DOSE = 1e4

#: Functions of ``reconstruct.__all__`` that are not operators to adjoint- or gradient-check,
#: each with the reason. Classes are skipped by the completeness test automatically.
NOT_OPERATORS: dict[str, str] = {
    # physical constants of the beam energy (floats, not tensors)
    "energy2wavelength": "scalar constant of the energy",
    "energy2sigma": "scalar constant of the energy",
    # grids, masks and initialisers: built once from the optics, never differentiated through
    "spatial_frequencies": "frequency grid (constructor)",
    "antialias_aperture": "fixed mask (constructor); bandlimit with it is registered",
    "bandlimit_mask": "boolean detector mask (constructor)",
    "aperture": "condenser aperture, piecewise (clamp) in the angle; constructor",
    "depth_probe_kernels": "initial DDI kernels; the adaptive ones are parameters (registered)",
    "probe_from_mean_pattern": "probe initialiser from measured data",
    "gram_schmidt": "initialiser of the probe modes (QR)",
    "orthogonalize_modes": "projection hook applied under no_grad (SVD)",
    "scan_grid": "scan positions (constructor)",
    # the optimisation loop and its batching
    "optimize": "the optimisation loop, not an operator",
    "index_batches": "batch index generator of the loop",
    # reconstruct/data.py, reconstruct/fit.py: data loading and problem assembly, no operators
    "from_dataset": "loads a simulated dataset into TomoData",
    "cell_centre": "rotation centre of the cell (index arithmetic)",
    "build_geometry": "constructor of a TiltSeriesGeometry (registered as a class)",
    "build_probe": "constructor of a MixedProbe (probe_from_aberrations is registered)",
    "build_propagator": "constructor of a Propagator (registered as a class)",
    "nonnegative": "constraint factory (a clamp applied under no_grad)",
    "r_factor": "quality figure (a float, evaluated without gradients)",
    "fit": "runs optimize on a Problem",
}


@dataclass(frozen=True)
class Case:
    """One built test case: ``forward(*inputs)``; for a linear entry ``forward`` takes one
    input ``x = inputs[0]`` and ``adjoint`` maps the output space back to it."""

    forward: Callable[..., Tensor]
    inputs: tuple[Tensor, ...]
    adjoint: Callable[[Tensor], Tensor] | None = None


@dataclass(frozen=True)
class Operator:
    """A registry entry.

    ``covers``: the ``reconstruct`` callables (functions or classes) the case exercises;
    ``linear``: the forward is linear in its one input and the library has an explicit adjoint
    (``test_adjoint``); ``differentiable``: ``gradcheck`` the forward wrt all inputs;
    ``twice``: also ``gradgradcheck``; ``fast``: ``gradcheck(fast_mode=...)``;
    ``slow``: run only under ``-m slow``.
    """

    name: str
    build: Callable[[], Case]
    covers: tuple[Callable, ...]
    linear: bool = False
    differentiable: bool = True
    twice: bool = False
    fast: bool = True
    slow: bool = False


REGISTRY: dict[str, Operator] = {}


def register(
    name: str, *covers: Callable, **flags: bool
) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    """Decorator: register the case factory under ``name`` (unique)."""

    def decorate(build: Callable[[], Case]) -> Callable[[], Case]:
        if name in REGISTRY:
            raise ValueError(f"operator {name!r} registered twice")
        REGISTRY[name] = Operator(name, build, covers, **flags)
        return build

    return decorate


def names(flag: str) -> list[str]:
    """Names of the entries with ``flag`` set (``linear``, ``differentiable``, ``twice``)."""
    return [op.name for op in REGISTRY.values() if getattr(op, flag)]


def params(flag: str) -> list:
    """:func:`names` as pytest params with the entry names as ids, slow entries marked."""
    return [
        pytest.param(name, id=name, marks=[pytest.mark.slow] if REGISTRY[name].slow else [])
        for name in names(flag)
    ]


def covered() -> set[str]:
    """``__name__`` of every ``reconstruct`` callable exercised by some entry."""
    return {c.__name__ for op in REGISTRY.values() for c in op.covers}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    """Seeded standard normal tensor (complex: real and imaginary parts each of variance 1/2)."""
    return torch.randn(shape, generator=gen(seed), dtype=dtype)


def rand(*shape: int, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    """Seeded uniform ``[0, 1)`` tensor."""
    return torch.rand(shape, generator=gen(seed), dtype=dtype)


def inner(a: Tensor, b: Tensor) -> Tensor:
    """``<a, b> = sum conj(a) b`` (real or complex)."""
    return (a.conj() * b).sum() if a.is_complex() else (a * b).sum()
