"""Adjoint tests ``<A x, y> = <x, A* y>`` for every linear operator of the registry
(``tests/operators.py``), the registry's completeness against ``reconstruct.__all__``, and
physics checks of the patch extraction."""

from __future__ import annotations

import pytest
import torch
from operators import NOT_OPERATORS, REGISTRY, covered, inner, params, randn

import reconstruct
from reconstruct import extract_patches


@pytest.mark.parametrize("name", params("linear"))
def test_adjoint(name: str) -> None:
    """``<A x, y> = <x, A* y>`` to 1e-10 for random ``x, y``; ``A`` is linear (additive and
    homogeneous, complex scalars for complex inputs) and the identity is not ``0 = 0``."""
    case = REGISTRY[name].build()
    (x,) = case.inputs
    ax = case.forward(x)
    y = randn(*ax.shape, dtype=ax.dtype, seed=1)
    lhs, rhs = inner(ax, y), inner(x, case.adjoint(y))
    assert abs(float(lhs.abs())) > 1e-3, f"degenerate adjoint test: <A x, y> = {lhs}"
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10), (lhs, rhs)
    scalar = 0.7 - 0.4j if x.is_complex() else -1.3
    x2 = randn(*x.shape, dtype=x.dtype, seed=2)
    torch.testing.assert_close(
        case.forward(scalar * x + x2), scalar * ax + case.forward(x2), rtol=1e-10, atol=1e-10
    )


def test_registry_covers_every_exported_operator() -> None:
    """Every function in ``reconstruct.__all__`` is in the registry or in ``NOT_OPERATORS``."""
    functions = {
        name
        for name in reconstruct.__all__
        if callable(getattr(reconstruct, name)) and not isinstance(getattr(reconstruct, name), type)
    }
    missing = sorted(functions - covered() - set(NOT_OPERATORS))
    assert not missing, (
        f"reconstruct exports {missing} without a registry entry: add an entry to "
        "tests/operators.py (@register('<name>', <callable>, linear=...)) or add "
        f"{missing} to NOT_OPERATORS in tests/operators.py with the reason"
    )
    both = sorted(covered() & set(NOT_OPERATORS))
    assert not both, f"{both} are registered: remove them from NOT_OPERATORS in tests/operators.py"
    stale = sorted(set(NOT_OPERATORS) - set(reconstruct.__all__))
    assert not stale, f"{stale} are not in reconstruct.__all__: remove them from NOT_OPERATORS"


def test_registry_is_well_formed() -> None:
    """Linear entries have an adjoint and one input; the others have no adjoint; every entry
    is checked by something and exercises some ``reconstruct`` callable."""
    for op in REGISTRY.values():
        case = op.build()
        assert op.linear or op.differentiable, op.name
        assert op.covers, op.name
        if op.linear:
            assert case.adjoint is not None and len(case.inputs) == 1, op.name
        else:
            assert case.adjoint is None, op.name
        for t in case.inputs:
            assert t.dtype in (torch.float64, torch.complex128) and not t.requires_grad, op.name


@pytest.mark.parametrize("patch", [(4, 5), (11, 3)])
def test_extract_patches_are_periodic_crops(patch):
    """Each patch equals the object rolled to its corner and cropped (wrap-around at every
    edge, corners negative or beyond the object; a patch taller than the object wraps twice)."""
    obj = randn(2, 9, 7, dtype=torch.complex64)
    corners = torch.tensor([[0, 0], [7, 5], [-3, 2], [12, -9], [4, 3]])
    got = extract_patches(obj, corners, patch)
    for b, (c0, c1) in enumerate(corners.tolist()):
        rows = torch.arange(c0, c0 + patch[0]) % 9
        cols = torch.arange(c1, c1 + patch[1]) % 7
        assert torch.equal(got[b], obj[:, rows][:, :, cols])
