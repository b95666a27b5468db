"""Data-fidelity losses between model and measured intensities ``[B, n1, n2]``.

All losses sum over detector pixels (and an optional boolean ``mask [n1, n2]``, e.g. the
antialias bandlimit) and then reduce over patterns with ``reduction`` (``"mean"`` over the
batch, default, so that learning rates do not depend on the batch size, or ``"sum"``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _reduce(per_pixel: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    if mask is not None:
        per_pixel = per_pixel * mask.to(per_pixel.dtype)
    per_pattern = per_pixel.sum(dim=(-2, -1))
    if reduction == "mean":
        return per_pattern.mean()
    if reduction == "sum":
        return per_pattern.sum()
    raise ValueError("reduction must be 'mean' or 'sum'")


def amplitude_loss(
    model: Tensor,
    data: Tensor,
    eps: float = 1e-8,
    mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``|| sqrt(I_model + eps) - sqrt(I + eps) ||**2`` (paper 000 eq. 13)."""
    diff = torch.sqrt(model + eps) - torch.sqrt(data.clamp_min(0) + eps)
    return _reduce(diff**2, mask, reduction)


def intensity_loss(
    model: Tensor, data: Tensor, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """``|| I_model - I ||**2`` (paper 003 eq. 3)."""
    return _reduce((model - data) ** 2, mask, reduction)


def poisson_nll(
    model: Tensor,
    data: Tensor,
    eps: float = 1e-8,
    mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Poisson negative log-likelihood, referenced to the saturated model (half the Poisson
    deviance): ``I_model - I - I log((I_model + eps) / (I + eps))`` per pixel.

    It has the gradient of ``I_model - I log I_model`` (``1 - I / I_model``), is >= 0 and is
    0 only where the model equals the data, so that its value measures misfit: a penalty
    scaled by the starting loss, and the divergence check against it, mean the same as for
    the amplitude loss. Per pixel, the terms cancel before the sum (no large constant in
    float32). ``model`` and ``data`` must be in the same units (counts: scale the model by
    the dose).
    """
    measured = data.clamp_min(0)
    per_pixel = model - measured - measured * (torch.log(model + eps) - torch.log(measured + eps))
    return _reduce(per_pixel, mask, reduction)


LOSSES = {"amplitude": amplitude_loss, "intensity": intensity_loss, "poisson": poisson_nll}
