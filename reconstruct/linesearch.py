"""Gradient descent with a backtracking line search (paper 001, Appendix A; Nocedal & Wright).

Each step tries ``p - alpha g`` and shrinks ``alpha <- rho alpha`` until the Armijo condition
``f(p - alpha g) <= f(p) - c alpha |g|²`` holds (paper 001: c = 0, rho = 0.1, initial step
10²). An accepted step lets the next one start at ``grow × alpha``, so the step adapts in both
directions. Used by the shared loop as the optimiser ``"line_search"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class BacktrackingGD(torch.optim.Optimizer):
    """Backtracking gradient descent; ``step(closure)`` needs a closure that recomputes the
    loss and the gradients."""

    def __init__(self, params: Iterable[Tensor], lr: float = 100.0, rho: float = 0.1,
                 c: float = 0.0, grow: float = 2.0, max_backtracks: int = 12) -> None:
        if not (lr > 0 and 0 < rho < 1 and c >= 0 and grow >= 1):
            raise ValueError(f"invalid line search settings lr={lr}, rho={rho}, c={c}")
        super().__init__(params, {"lr": lr, "rho": rho, "c": c, "grow": grow,
                                  "max_backtracks": max_backtracks})

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[..., Tensor] | None = None, loss: float | None = None
    ) -> Tensor:
        """One update. ``closure(backward=True)`` evaluates the loss (and, with ``backward``,
        its gradient); trial points are evaluated with ``backward=False``. ``loss``: the loss
        at the current parameters when their ``.grad`` already holds its gradient (saves one
        evaluation)."""
        if closure is None:
            raise ValueError("BacktrackingGD needs a closure")
        if loss is None:
            with torch.enable_grad():
                loss = float(closure().detach())
        f0 = float(loss)
        group = self.param_groups[0]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        start = [p.detach().clone() for p in params]
        grads = [p.grad.detach().clone() for p in params]
        g2 = sum(float((g * g).sum()) for g in grads)
        alpha = group["lr"]
        for _ in range(group["max_backtracks"]):
            for p, p0, g in zip(params, start, grads, strict=True):
                p.copy_(p0 - alpha * g)
            f = float(closure(backward=False).detach())
            if f <= f0 - group["c"] * alpha * g2:
                group["lr"] = alpha * group["grow"]
                return torch.tensor(f)
            alpha *= group["rho"]
        for p, p0 in zip(params, start, strict=True):
            p.copy_(p0)
        group["lr"] = alpha
        return torch.tensor(f0)
