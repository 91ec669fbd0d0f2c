import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.nn import quantizers


def test_registry_names():
    assert quantizers.get("ste_sign").is_binary
    assert isinstance(quantizers.get("tanh"), quantizers.Tanh)
    assert isinstance(quantizers.get("identity"), quantizers.Identity)
    assert isinstance(quantizers.get(None), quantizers.Identity)
    q = quantizers.SteSign()
    assert quantizers.get(q) is q
    with pytest.raises(ValueError, match="unknown quantizer"):
        quantizers.get("ternary")


def test_sign_of_zero_is_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0])
    assert quantizers.get("ste_sign")(x).tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=64))
def test_ste_sign_forward_and_gradient(values):
    x = torch.tensor(values, dtype=torch.float32, requires_grad=True)
    y = quantizers.get("ste_sign")(x)
    assert set(y.tolist()) <= {-1.0, 1.0}
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    upstream = torch.arange(len(values), dtype=torch.float32) + 1
    y.backward(upstream)
    expected = torch.where(x.detach().abs() <= 1, upstream, torch.zeros_like(upstream))
    assert torch.equal(x.grad, expected)


def test_tanh_and_identity_gradients_match_autograd():
    x = torch.linspace(-3, 3, 11, requires_grad=True)
    quantizers.get("tanh")(x).sum().backward()
    assert torch.allclose(x.grad, 1 - torch.tanh(x.detach()) ** 2)
    x.grad = None
    quantizers.get("identity")(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
