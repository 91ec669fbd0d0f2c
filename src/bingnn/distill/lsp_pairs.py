"""Base distances of LSP between each point and its listed neighbours, pair by pair.

The plain formulation builds the ``(B, N, N)`` distance matrix by a matrix product and gathers
the ``K`` listed entries of each row; with ``K`` = 40 (the union of two 20-NN lists) of 512
points that computes 13 times the needed products and moves ``(B, N, N)`` tensors through a
dozen elementwise steps, forward and backward. On a CPU in float32 the native kernels
(``csrc/pair_distances.cpp``) compute the ``B N K`` pairs directly (squared distance or dot
product, per pair) and scatter their gradients back; elsewhere (GPUs, other dtypes, no
extension) the matrix path runs. Both give the same values up to float32 rounding (the direct
difference is the more accurate one: no cancellation of ``|z_i|^2 + |z_j|^2 - 2 z_i.z_j``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bingnn.nn import _kernels
from bingnn.nn._amp import fp32_backward, fp32_forward

try:
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None

__all__ = ["pair_base_distances"]

_MODES = {"l2": 0, "hamming": 1}


class _PairDistances(torch.autograd.Function):
    """``z (B, N, C)``, ``idx (B, N, K)`` -> ``(B, N, K)``: squared distance (mode 0) or dot
    product (mode 1) of ``z_i`` and ``z_idx[i, r]``."""

    @staticmethod
    @fp32_forward
    def forward(ctx, z: Tensor, idx: Tensor, mode: int) -> Tensor:  # type: ignore[override]
        zc, ic = z.detach().contiguous(), idx.contiguous()
        out = torch.empty(ic.shape)
        _native.pair_distances(zc.numpy(), ic.numpy(), mode, out.numpy(), _kernels.threads())
        ctx.save_for_backward(zc, ic)
        ctx.mode = mode
        return out

    @staticmethod
    @fp32_backward
    def backward(ctx, g: Tensor):  # type: ignore[override]
        z, idx = ctx.saved_tensors
        gz = torch.empty(z.shape)
        _native.pair_distances_backward(z.numpy(), idx.numpy(), ctx.mode,
                                        g.contiguous().numpy(), gz.numpy(), _kernels.threads())
        return gz, None, None


def _native_applies(z: Tensor, idx: Tensor) -> bool:
    return (_kernels.use_native(z, idx) and hasattr(_native, "pair_distances")
            and z.dtype == torch.float32)


def pair_base_distances(z: Tensor, idx: Tensor, base: str) -> Tensor:
    r"""Base distance of LSP (``"l2"``: :math:`\|z_i - z_j\|^2`; ``"hamming"``:
    :math:`\tfrac12 \sum_c (1 - z_{ic} z_{jc})`) between every point ``i`` of ``z (B, N, C)``
    and its neighbours ``j = idx[b, i, r]`` (``idx (B, N, K)`` int64 in ``[0, N)``):
    ``(B, N, K)``, differentiable in ``z``."""
    if base not in _MODES:
        raise ValueError(f"base must be 'l2' or 'hamming', got {base!r}")
    if _native_applies(z, idx):
        d = _PairDistances.apply(z, idx, _MODES[base])
        return d if base == "l2" else 0.5 * (z.shape[-1] - d)
    gram = torch.matmul(z, z.transpose(1, 2))
    if base == "l2":
        sq = (z * z).sum(-1)
        full = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * gram).clamp_min(0.0)
    else:
        full = 0.5 * (z.shape[-1] - gram)
    return torch.gather(full, 2, idx)
