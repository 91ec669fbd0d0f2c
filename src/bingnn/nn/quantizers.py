"""Quantizers: small named modules that map real values to (pseudo-)binary ones.

Layers never hard-code how they binarize; they take a quantizer as an argument, by object or by
name, so swapping a binarization scheme never means editing a layer::

    from bingnn.nn import quantizers
    q = quantizers.get("ste_sign")
    y = q(x)                      # +1 / -1, gradient passed where |x| <= 1

    BinaryLinear(64, 128, kernel_quantizer="ste_sign")
    BinaryBlock(64, 128, input_quantizer="tanh")   # stage-1 "pseudo-quantized" student

Bit convention (used everywhere in bingnn, the native engine included): ``sign(0) = +1``, so every
real value maps to exactly one bit, and a set bit (1) encodes ``+1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bingnn.nn._amp import fp32_backward, fp32_forward

__all__ = [
    "Quantizer", "SteSign", "Tanh", "Identity", "get", "available", "binary_sign", "ste_grad",
]


def binary_sign(x: Tensor) -> Tensor:
    """``sign`` with ``sign(0) = +1``: the bit convention of bingnn (torch.sign maps 0 to 0)."""
    # Scalar branches: no two full-size constant tensors per call (this runs on every layer).
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _just_above(value: float, dtype: torch.dtype) -> float:
    """The smallest number of ``dtype`` above ``value`` (``x < result`` iff ``x <= value``)."""
    t = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)))


def ste_grad(grad: Tensor, x: Tensor, clip: float) -> Tensor:
    """``grad * (|x| <= clip)`` in one fused pass (ATen's ``hardtanh_backward``, which passes
    the gradient where ``-c < x < c``, with ``c`` the next representable number above
    ``clip``), without a mask or a product tensor."""
    if not x.is_floating_point() or x.dtype != grad.dtype:
        return grad * (x.abs() <= clip).to(grad.dtype)
    c = _just_above(clip, x.dtype)
    return torch.ops.aten.hardtanh_backward(grad, x, -c, c)


class _SteSignFn(torch.autograd.Function):
    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, clip: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.clip = clip
        return binary_sign(x)

    @staticmethod
    @fp32_backward
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ste_grad(grad, x, ctx.clip), None


class Quantizer(nn.Module):
    """Base class; ``is_binary`` tells whether the output is exactly +-1."""

    name: str = "quantizer"
    is_binary: bool = False

    def extra_repr(self) -> str:
        return self.name


class SteSign(Quantizer):
    r"""Sign with a straight-through estimator.

    Forward: :math:`q(x) = +1` if :math:`x \ge 0` else :math:`-1`.
    Backward: :math:`\partial q / \partial x = 1_{|x| \le c}` with ``clip`` :math:`c = 1`
    (the hard-tanh pseudo-gradient of Courbariaux et al. and Bahri et al.).
    """

    name = "ste_sign"
    is_binary = True

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        self.clip = float(clip)

    def forward(self, x: Tensor) -> Tensor:
        return _SteSignFn.apply(x, self.clip)


class Tanh(Quantizer):
    """``tanh`` pseudo-quantizer of the first distillation stage (smooth, real-valued)."""

    name = "tanh"

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class Identity(Quantizer):
    """No quantization: activations or weights stay real."""

    name = "identity"

    def forward(self, x: Tensor) -> Tensor:
        return x


_REGISTRY: dict[str, type[Quantizer]] = {
    "ste_sign": SteSign,
    "sign": SteSign,
    "tanh": Tanh,
    "identity": Identity,
    "none": Identity,
}


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_REGISTRY)


def get(spec: str | Quantizer | None) -> Quantizer:
    """Return a quantizer module from a name (``"ste_sign"``, ``"tanh"``, ``"identity"``),
    an existing quantizer (returned as is) or ``None`` (identity)."""
    if spec is None:
        return Identity()
    if isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]()
    raise ValueError(f"unknown quantizer {spec!r}; choose one of {', '.join(available())}")
