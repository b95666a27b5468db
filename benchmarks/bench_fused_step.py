"""Is a hand-written backward for the transmit-and-propagate step worth it? (issue 14)

The profile of ``bench_multislice.py --case b`` shows two thirds of the complex products in
autograd's backward. This times forward + backward of :func:`reconstruct.multislice.
multislice_forward` (autograd) against the same recursion with one ``autograd.Function`` per
step ``psi <- ifft2(fft2(t psi) H)``, whose backward is written out (``a = ifft2(fft2(g)
conj(H))``, ``d psi = a conj(t)``, ``d t = sum_modes a conj(psi)``) with ``conj(H)`` computed
once, on the shapes of case b (chunks of 4 positions, 12 modes, 128², 6 slices)::

    OMP_NUM_THREADS=1 python benchmarks/bench_fused_step.py --repeat 5

It first checks that both give the same gradients, then prints ms per chunk for each,
interleaved, and their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from reconstruct.multislice import multislice_forward


class _TransmitPropagate(torch.autograd.Function):
    """``ifft2(fft2(psi t) H)`` for ``psi [B, O, P, M1, M2]``, ``t [B, O, 1, M1, M2]``."""

    @staticmethod
    def forward(ctx, psi: Tensor, t: Tensor, prop: Tensor, prop_conj: Tensor) -> Tensor:
        ctx.save_for_backward(psi, t, prop_conj)
        return torch.fft.ifft2(torch.fft.fft2(psi * t) * prop)

    @staticmethod
    def backward(ctx, grad: Tensor):
        psi, t, prop_conj = ctx.saved_tensors
        a = torch.fft.ifft2(torch.fft.fft2(grad) * prop_conj)
        d_psi = a * t.conj() if ctx.needs_input_grad[0] else None
        d_t = (a * psi.conj()).sum(2, keepdim=True) if ctx.needs_input_grad[1] else None
        return d_psi, d_t, None, None


def _fused(probes: Tensor, slices: list[Tensor], prop: Tensor) -> Tensor:
    psi, prop_conj = probes[:, None], prop.conj().resolve_conj()
    for t in slices[:-1]:
        psi = _TransmitPropagate.apply(psi, t[:, :, None], prop, prop_conj)
    return psi * slices[-1][:, :, None]


def _step(fused: bool, probes: Tensor, slices: list[Tensor], prop: Tensor) -> list[Tensor]:
    for t in slices:
        t.grad = None
    waves = (_fused(probes, slices, prop) if fused
             else multislice_forward(probes, slices, prop[None].expand(len(slices), -1, -1)))
    torch.fft.fft2(waves).abs().sum().backward()
    return [t.grad.clone() for t in slices]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--modes", type=int, default=12)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    m = args.size
    probes = torch.randn(args.chunk, args.modes, m, m, dtype=torch.complex64, generator=gen)
    slices = [torch.polar(torch.ones(args.chunk, 1, m, m), torch.randn(args.chunk, 1, m, m,
                                                                        generator=gen))
              .requires_grad_() for _ in range(args.slices)]
    prop = torch.polar(torch.ones(m, m), torch.randn(m, m, generator=gen))
    ref, new = _step(False, probes, slices, prop), _step(True, probes, slices, prop)
    err = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ref, new, strict=True))
    print(f"max relative gradient difference: {err:.2e}")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for fused in (False, True):
            start = time.perf_counter()
            _step(fused, probes, slices, prop)
            times[fused].append((time.perf_counter() - start) * 1e3)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"autograd {med[False]:.1f} ms, hand-written backward {med[True]:.1f} ms per chunk: "
          f"ratio {med[False] / med[True]:.2f}")


if __name__ == "__main__":
    main()
