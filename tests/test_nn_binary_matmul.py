"""Products of +-1 matrices on packed bits (training's forward in stage 3) equal the float
products, and their backward equals autograd of the plain formulation."""

from __future__ import annotations

import pytest
import torch

from bingnn.nn.binary_matmul import XorEdgeLinear, is_pm1, packed_route, pm1_linear
from bingnn.nn.edge_features import edge_features


def pm1(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(*shape, generator=g) < 0.5, 1.0, -1.0)


@pytest.mark.parametrize("c", [1, 7, 64, 65, 130])
def test_pm1_linear_equals_float_product_and_grads(c: int) -> None:
    x, w = pm1(3, 11, c, seed=c), pm1(9, c, seed=c + 1)
    assert packed_route(x, w) and is_pm1(x)
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    ya, yb = pm1_linear(xa, wa), torch.nn.functional.linear(xb, wb)
    assert torch.equal(ya, yb)
    g = torch.randn(ya.shape)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(wa.grad, wb.grad)


def test_pm1_linear_on_real_inputs_is_the_float_product() -> None:
    x, w = torch.randn(4, 10), pm1(3, 10)
    assert torch.equal(pm1_linear(x, w), torch.nn.functional.linear(x, w))


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("b,n,k,c", [(1, 5, 5, 3), (2, 13, 4, 64), (2, 9, 1, 70)])
def test_xor_edge_linear_equals_plain(packed: bool, b: int, n: int, k: int, c: int) -> None:
    x = pm1(b, n, c, seed=n)
    w = pm1(6, c, seed=c) if packed else torch.randn(6, c)
    idx = torch.randint(0, n, (b, n, k), generator=torch.Generator().manual_seed(k))
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    ya = XorEdgeLinear.apply(xa, idx, wa, packed)
    yb = torch.nn.functional.linear(edge_features(xb, idx, "xor")[..., :c], wb)
    if packed:
        assert torch.equal(ya, yb)
    else:
        torch.testing.assert_close(ya, yb)
    g = torch.randn(ya.shape)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-5, atol=1e-5)
