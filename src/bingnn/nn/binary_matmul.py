r"""Products with +-1 matrices in training: XOR and popcount forward, table lookups backward.

When both operands of a linear map are exactly +-1 (binary activations times binary weights,
distillation stage 3), :math:`\langle a, b \rangle = C - 2\,\mathrm{popcount}(a \oplus b)` on
packed bits gives the same integers as a float matrix product (exact in float32 while
:math:`C < 2^{24}`), with the engine's native binary GEMM.

The backward multiplies real gradients by a +-1 matrix (the weights for the input gradient,
the inputs for the weight gradient). On a CPU running AVX-512 that product takes the native
table-lookup kernel (``csrc/pm1_matmul.hpp``: the 32 signed sums of every 5 gradient values are
tabulated once and each output channel picks one, instead of 5 multiply-adds), which reads the
+-1 operand as packed bits; it equals a float product up to float32 rounding (another order of
additions). Elsewhere (other levels, GPUs, other dtypes, no extension) the float products run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bingnn.nn import _kernels
from bingnn.nn._amp import fp32_backward, fp32_forward

try:
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None


def is_pm1(x: Tensor) -> bool:
    """Whether every entry of ``x`` is exactly +1 or -1 (one pass, one synchronisation)."""
    return bool(((x == 1) | (x == -1)).all())


def packed_route(*tensors: Tensor) -> bool:
    """Whether the packed forward applies: native binary GEMM built, dense CPU float32
    operands (sparse bag-of-words node features take the float product)."""
    return (
        _native is not None
        and hasattr(_native, "binary_gemm")
        and all(t.device.type == "cpu" and t.dtype == torch.float32
                and t.layout == torch.strided for t in tensors)
    )


def pack_rows(x: Tensor) -> Tensor:
    """Signs of ``x (..., C)`` packed into ``(..., ceil(C / 64))`` words, as int64 (bit layout of
    the engine: bit ``c % 64`` of word ``c // 64``, set = +1)."""
    lead, c = x.shape[:-1], x.shape[-1]
    flat = x.detach().reshape(-1, c).contiguous().numpy()
    packed = _native.pack_signs(flat, _kernels.threads())
    return torch.from_numpy(packed.view(np.int64)).reshape(*lead, packed.shape[-1])


def packed_gemm(a: Tensor, b: Tensor, n_bits: int) -> Tensor:
    """``(M, W) x (N, W)`` packed int64 rows -> ``(M, N)`` float32 +-1 dot products."""
    a_u = a.contiguous().numpy().view(np.uint64)
    b_u = b.contiguous().numpy().view(np.uint64)
    if hasattr(_native, "binary_gemm_f32"):  # converted block by block, in cache
        out = torch.empty(a.shape[0], b.shape[0])
        _native.binary_gemm_f32(a_u, b_u, int(n_bits), out.numpy(), _kernels.threads())
        return out
    out_i = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    _native.binary_gemm(a_u, b_u, int(n_bits), _kernels.threads(), out_i)
    return torch.from_numpy(out_i).to(torch.float32)


def pm1_route(*tensors: Tensor) -> bool:
    """Whether the +-1 products take the table-lookup kernels (the backward's
    :func:`pm1_matmul`, the stage-2 forward's :func:`pm1_rows_linear`): :func:`packed_route`,
    and the native core dispatches AVX-512 (an 8-lane permute makes the 32-entry lookup dearer
    than the multiply-adds it replaces, and each lookup of the forward's tables reads a 16-lane
    row, so on AVX2 PyTorch's matmul is the faster path)."""
    return (packed_route(*tensors) and hasattr(_native, "pm1_rows_linear")
            and _native.get_dispatch() == "avx512")


def pm1_codes(bits: Tensor, c: int, negate: bool = False) -> np.ndarray:
    """Group codes ``(ceil(K / 5), c)`` uint8 of the +-1 matrix ``B (K, c)`` whose packed rows
    are ``bits (K, W)`` int64 (:func:`pack_rows`; ``-B`` with ``negate``)."""
    b = bits.contiguous().numpy().view(np.uint64)
    codes = np.empty(((b.shape[0] + 4) // 5, c), dtype=np.uint8)
    _native.pm1_codes(b, int(c), bool(negate), codes, _kernels.threads())
    return codes


def pm1_matmul(a: Tensor, codes: np.ndarray, transpose_a: bool = False) -> Tensor:
    """``a (M, K) @ B`` (or ``a.T @ B`` with ``transpose_a``, ``a (K, M)``) for the +-1 matrix
    ``B (K, C)`` given by :func:`pm1_codes`; float32 ``(M, C)``."""
    a_np = a.detach().contiguous().numpy()
    rows = a_np.shape[1] if transpose_a else a_np.shape[0]
    out = torch.empty(rows, codes.shape[1])
    _native.pm1_matmul(a_np, bool(transpose_a), codes, out.numpy(), _kernels.threads())
    return out


def pm1_rows_linear(bits: Tensor, w: Tensor, c: int) -> Tensor:
    """``Q W^T`` ``(M, C_out)`` for the +-1 matrix ``Q (M, c)`` whose packed rows are ``bits
    (M, W)`` int64 (:func:`pack_rows`; bit set = +1) and real weights ``w (C_out, c)``, by the
    native nibble tables (``pm1_rows_linear`` in ``csrc/pm1_matmul.hpp``): a layer with binary
    activations and real weights without a float edge tensor or its matrix product. Equal to
    ``F.linear`` up to float32 rounding (another order of additions); no gradient."""
    out = torch.empty(bits.shape[0], w.shape[0])
    _native.pm1_rows_linear(bits.contiguous().numpy().view(np.uint64), int(c),
                            w.detach().float().contiguous().numpy(), out.numpy(),
                            _kernels.threads())
    return out


class _PackedLinear(torch.autograd.Function):
    """``F.linear(x, w)`` of +-1 operands: packed forward, float backward."""

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        lead, c = x.shape[:-1], x.shape[-1]
        y = packed_gemm(pack_rows(x).reshape(-1, (c + 63) // 64), pack_rows(w), c)
        return y.view(*lead, w.shape[0])

    @staticmethod
    @fp32_backward
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        c = x.shape[-1]
        g2 = g.reshape(-1, g.shape[-1])
        gx = gw = None
        if pm1_route(g2):
            if ctx.needs_input_grad[0]:
                gx = pm1_matmul(g2, pm1_codes(pack_rows(w), c)).view(x.shape)
            if ctx.needs_input_grad[1]:
                gw = pm1_matmul(g2, pm1_codes(pack_rows(x.reshape(-1, c)), c), transpose_a=True)
            return gx, gw
        if ctx.needs_input_grad[0]:
            gx = torch.matmul(g, w)
        if ctx.needs_input_grad[1]:
            gw = g2.t().matmul(x.reshape(-1, c))
        return gx, gw


def _xor_rows(x: Tensor, idx: Tensor) -> Tensor:
    """Packed XOR of every edge's two rows, ``(B * N * k, W)`` int64, for ``x (B, N, C)`` of
    +-1 and ``idx (B, N, k)``: bit set where ``x_j * x_i = -1``."""
    b, n, _ = x.shape
    k = idx.shape[-1]
    px = pack_rows(x).reshape(b * n, -1)
    flat = (idx + (torch.arange(b) * n).view(b, 1, 1)).reshape(-1)
    return (px.index_select(0, flat).view(b * n, k, -1) ^ px.unsqueeze(1)).reshape(b * n * k, -1)


def pm1_linear(x: Tensor, w: Tensor, x_pm1: bool | None = None) -> Tensor:
    """``F.linear(x, w)`` for +-1 weights ``w``; when ``x`` is +-1 too (``x_pm1``, checked if
    ``None``) and the packed route applies, the forward runs on packed bits (same values)."""
    if packed_route(x, w) and (x_pm1 if x_pm1 is not None else is_pm1(x)):
        return _PackedLinear.apply(x, w)
    return F.linear(x, w)


class XorEdgeLinear(torch.autograd.Function):
    r"""The relative half of a binary XorEdgeConv:
    :math:`y_{ij} = [x_j \oplus x_i]\, W_a^\top = (x_j \odot x_i)(-W_a)^\top` for
    ``x (B, N, C)`` of +-1, ``idx (B, N, k)``, ``w_a (C_out, C)`` -> ``(B, N, k, C_out)``.

    With +-1 weights (``packed=True``) the forward XORs packed rows and runs the binary GEMM;
    otherwise it multiplies the float edge features. Only ``x`` and ``idx`` are saved: the
    backward rebuilds the edge features, so no ``(B, N, k, C)`` tensor lives between the passes.
    """

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, idx: Tensor, w_a: Tensor,  # type: ignore[override]
                packed: bool) -> Tensor:
        ctx.save_for_backward(x, idx, w_a)
        ctx.packed = packed
        b, n, c = x.shape
        if packed:
            y = packed_gemm(_xor_rows(x, idx), pack_rows(w_a), c)
            return y.view(b, n, idx.shape[-1], -1)
        if pm1_route(x) and is_pm1(x):  # -(x_j * x_i) is +1 where the XOR bit is set
            return pm1_rows_linear(_xor_rows(x, idx), w_a, c).view(b, n, idx.shape[-1], -1)
        return F.linear(_kernels.xor_edge_features(x, idx), -w_a)

    @staticmethod
    @fp32_backward
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, idx, w_a = ctx.saved_tensors
        b, n, c = x.shape
        k = idx.shape[-1]
        g2 = g.reshape(-1, g.shape[-1])
        # the lookups need +-1 edge features (binary activations; stage 1's are real)
        lookup = pm1_route(g2, x) and (ctx.packed or is_pm1(x))
        gw = None
        if ctx.needs_input_grad[2]:
            if lookup:  # -(x_j * x_i) is +1 where the XOR bit is set
                gw = pm1_matmul(g2, pm1_codes(_xor_rows(x, idx), c), transpose_a=True)
            else:
                prod = _kernels.xor_edge_features(x, idx)
                gw = -(g2.t().matmul(prod.reshape(-1, c)))
                del prod
        gx = None
        if ctx.needs_input_grad[0]:
            if lookup and ctx.packed:  # +-1 weights: -w_a by its codes
                gprod = pm1_matmul(g2, pm1_codes(pack_rows(w_a), c, negate=True))
            else:
                gprod = torch.matmul(g2, w_a).neg_()
            gx = _kernels.xor_edge_features_backward(gprod.view(b, n, k, c), x, idx)
        return gx, None, gw, None
