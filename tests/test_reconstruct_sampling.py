"""Bilinear sampling at scan positions: exactness, adjoint, gradients, dtype/device."""

from __future__ import annotations

import pytest
import torch

from reconstruct.sampling import fast_size, sample_bilinear, sample_bilinear_adjoint


def test_integer_positions_pick_pixels_and_wrap():
    img = torch.arange(30.0).reshape(1, 5, 6)
    coords = torch.tensor([[[0.0, 0.0], [4.0, 5.0], [5.0, 6.0], [-1.0, 2.0]]])
    out = sample_bilinear(img, coords)
    assert torch.equal(out, torch.tensor([[0.0, 29.0, 0.0, 26.0]]))


def test_linear_function_is_reproduced_exactly_inside():
    x, y = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    img = (2 * x + 3 * y)[None].double()
    coords = torch.rand(1, 50, 2, dtype=torch.float64) * 6.5
    expected = 2 * coords[..., 0] + 3 * coords[..., 1]
    assert torch.allclose(sample_bilinear(img, coords), expected, atol=1e-12)


def test_adjoint():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 7, 9, generator=g, dtype=torch.float64)
    coords = torch.rand(3, 20, 2, generator=g, dtype=torch.float64) * 12 - 2
    vals = torch.randn(3, 20, generator=g, dtype=torch.float64)
    lhs = (sample_bilinear(img, coords) * vals).sum()
    rhs = (img * sample_bilinear_adjoint(vals, coords, (7, 9))).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)


def test_gradcheck_image_and_coords():
    g = torch.Generator().manual_seed(1)
    img = torch.randn(2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    coords = (torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 3 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(sample_bilinear, (img, coords))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    out = sample_bilinear(torch.zeros(1, 4, 4, dtype=dtype), torch.zeros(1, 2, 2, dtype=dtype))
    assert out.dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    img, coords = torch.randn(2, 6, 6), torch.rand(2, 5, 2) * 5
    out = sample_bilinear(img.cuda(), coords.cuda())
    assert out.is_cuda and torch.allclose(out.cpu(), sample_bilinear(img, coords), atol=1e-6)


def test_fast_size_is_the_smallest_length_with_only_the_given_prime_factors():
    def smooth(m: int, primes: tuple[int, ...]) -> bool:
        for p in primes:
            while m % p == 0:
                m //= p
        return m == 1

    for primes in ((2, 3, 5), (2, 3, 5, 7)):
        for n in range(1, 300):
            m = fast_size(n, primes)
            assert smooth(m, primes) and not any(smooth(k, primes) for k in range(n, m))
    assert fast_size(146, (2, 3, 5)) == 150 and fast_size(146) == 147  # 146 = 2 x 73
