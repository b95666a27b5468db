"""``torch.autograd.gradcheck`` (float64/complex128, tiny inputs) for every differentiable
operator of the registry (``tests/operators.py``), ``gradgradcheck`` where flagged.

``fast_mode`` compares ``J v`` and ``u^T J`` for random ``u, v`` (PyTorch's "fast gradcheck");
the full-Jacobian comparison of the end-to-end model (``ptychography-*-full_jacobian``) runs
under ``-m slow``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch
from operators import REGISTRY, params
from torch.autograd import gradcheck, gradgradcheck

from reconstruct import DepthDependentInteraction

gradcheck_module = sys.modules["torch.autograd.gradcheck"]


def _inputs(name: str) -> tuple:
    return tuple(t.clone().requires_grad_(True) for t in REGISTRY[name].build().inputs)


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies the gradient by ``factor`` (a planted bug)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # noqa: ANN001
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return grad * ctx.factor, None


def _gradcheck(forward: Callable, inputs: tuple) -> bool:
    """Fast ``gradcheck`` with the shared tolerances and a fixed draw of its ``u, v``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return gradcheck(forward, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True,
                         raise_exception=False)  # fmt: skip


#: the planted error that the gradcheck of every input must detect (10%)
PLANTED = 0.9


@pytest.mark.parametrize("name", params("differentiable"))
def test_gradcheck(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Analytic (autograd) and finite-difference derivatives agree; and the check is not
    vacuous: the gradient wrt each input scaled by ``PLANTED`` (a 10% error) fails it (a zero
    or tiny Jacobian, below gradcheck's atol, would pass anything). The planted check runs in
    fast mode (for a ``fast=False`` entry its fast-mode twin is checked)."""
    op, forward, inputs = REGISTRY[name], REGISTRY[name].build().forward, _inputs(name)
    assert gradcheck(forward, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=op.fast)
    if not op.fast:
        return
    # a failing fast check would recompute the full Jacobians for its error message
    monkeypatch.setattr(gradcheck_module, "_run_slow_mode_and_get_error",
                        lambda *args, **kwargs: "", raising=False)  # fmt: skip
    for i in range(len(inputs)):

        def planted(*xs: torch.Tensor, i: int = i) -> torch.Tensor:
            return forward(*(_ScaleGrad.apply(x, PLANTED) if j == i else x
                             for j, x in enumerate(xs)))  # fmt: skip

        assert not _gradcheck(planted, inputs), (
            f"{name}: gradcheck misses a 10% error in the gradient wrt input {i}; "
            "express the case in units where its Jacobian is O(1)"
        )


@pytest.mark.parametrize("name", params("twice"))
def test_gradgradcheck(name: str) -> None:
    """Second derivatives (the backward is itself differentiable)."""
    assert gradgradcheck(REGISTRY[name].build().forward, _inputs(name))


def test_adaptive_ddi_kernels_are_learnable() -> None:
    """``adaptive`` mode makes the kernels a Parameter; ``rigid`` keeps them a buffer."""
    kernels = torch.rand(3, 8, 8, dtype=torch.float64)
    adaptive = DepthDependentInteraction("adaptive", kernels)
    assert adaptive.kernels.requires_grad and "kernels" in dict(adaptive.named_parameters())
    rigid = DepthDependentInteraction("rigid", kernels)
    assert not list(rigid.parameters()) and "kernels" in dict(rigid.named_buffers())
