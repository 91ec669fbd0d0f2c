r"""The relative half of a binary RF EdgeConv in training, fused: BatchNorm over the edges,
quantizer and linear map of :math:`d_{ij} = x_j - x_i`, without an edge tensor between the
steps.

.. math::
    y_{ij} = q\big(\gamma \odot (d_{ij} - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta\big)\,
        W_a^\top

with :math:`\mu, \sigma^2` the statistics of :math:`d` over all :math:`M = B N k` edges and
:math:`q` a sign (straight-through, clipped at ``clip``) or ``tanh``. The native kernels
(``csrc/train_float.hpp``) compute the statistics and the quantized features from the points
and the neighbour lists directly; with +-1 weights the sign bits go packed into the binary
GEMM, with real weights (stage 2) into the table-lookup product
(:func:`~bingnn.nn.binary_matmul.pm1_rows_linear`). The backward rebuilds the features from
the points, takes the two float products and returns the BatchNorm backward
(:math:`\partial d = \gamma/\sqrt{\sigma^2+\epsilon}\,(\partial z - \overline{\partial z}
- \hat d\,\overline{\partial z\,\hat d})`) scattered to the neighbour and the centre. CPU
float32 only (:func:`applies`); the PyTorch operations of
:class:`~bingnn.nn.BinPointEdgeConv` run elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bingnn.nn import _kernels, global_batchnorm
from bingnn.nn._amp import fp32_backward, fp32_forward
from bingnn.nn.binary_matmul import pack_rows, packed_gemm, pm1_route, pm1_rows_linear

try:
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None


def applies(x: Tensor, tanh: bool = False) -> bool:
    """Whether the fused kernels can run on ``x``; with ``tanh``, whether they are worth it for
    the tanh quantizer: only the AVX-512 kernels have a vectorised tanh (the other levels call
    ``std::tanh`` per element, slower than PyTorch's edge-wise path)."""
    if not (_kernels.use_native(x) and hasattr(_native, "edge_diff_quant")):
        return False
    return not tanh or _native.get_dispatch() == "avx512"


def edge_stats(x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance ``(C)`` of :math:`d_{ij} = x_j - x_i` over this batch's
    :math:`M = B N k` edges (no gradient: :class:`EdgeDiffSelect`'s backward carries it)."""
    mean64, var64 = _native.edge_diff_stats(x.detach().contiguous().numpy(),
                                            idx.contiguous().numpy(), _kernels.threads())
    return torch.from_numpy(mean64).float(), torch.from_numpy(var64).float()


#: Edge values per tile of points when only their extremes are kept: the tile's (edges, C_out)
#: float32 block (4 MiB at 256 channels) stays in cache between the product and the reduction.
TILE_EDGES = 4096

Extremes = tuple[Tensor, Tensor, Tensor, Tensor]


def _edge_products(x: Tensor, idx: Tensor, s: Tensor, t: Tensor, w_a: Tensor, mode: int,
                   packed: bool, fma: bool, full: bool) -> tuple[Tensor | None, Extremes]:
    """``y = q(d * s + t) W_a^T`` of every edge, without gradient: ``(y (B, N, k, C_out) or
    None, (y_max, rank_max, y_min, rank_min) (B, N, C_out) over each point's neighbours)``.

    Where the quantizer is a sign the products run from packed bits (binary GEMM with +-1
    weights, :func:`~bingnn.nn.binary_matmul.pm1_rows_linear` with real ones) tile by tile of
    points, so that without ``full`` the ``B N k C_out`` edge tensor (168 MB in the last layer
    at batch 16, 512 points) is never written: a neighbour max needs its extremes only."""
    b, n, c = x.shape
    k = idx.shape[-1]
    th = _kernels.threads()
    xn, ixn = x.detach().contiguous().numpy(), idx.contiguous().numpy()
    sn, tn = s.detach().contiguous().numpy(), t.detach().contiguous().numpy()
    lookup = mode == 0 and not packed and pm1_route(x)  # signs times real weights: tables
    if not (packed or lookup):
        q = torch.empty(b, n, k, c)
        _native.edge_diff_quant(xn, ixn, sn, tn, mode, q.numpy(), None, th, fma)
        y = F.linear(q, w_a.detach())
        del q
        return (y if full else None), _kernels.neighbor_extremes(y, None)[:4]
    bits = torch.empty(b * n * k, (c + 63) // 64, dtype=torch.int64)
    _native.edge_diff_quant(xn, ixn, sn, tn, 0, None, bits.numpy().view("uint64"), th, fma)
    w_bits = None if lookup else pack_rows(w_a.detach())

    def products(rows: Tensor) -> Tensor:
        return pm1_rows_linear(rows, w_a, c) if lookup else packed_gemm(rows, w_bits, c)

    c_out = w_a.shape[0]
    if full:
        y = products(bits).view(b, n, k, c_out)
        return y, _kernels.neighbor_extremes(y, None)[:4]
    points = b * n
    out = [torch.empty(points, c_out, dtype=dt)
           for dt in (torch.float32, torch.int64, torch.float32, torch.int64)]
    step = max(1, TILE_EDGES // max(1, k))
    for p0 in range(0, points, step):
        p1 = min(points, p0 + step)
        y = products(bits[p0 * k:p1 * k]).view(1, p1 - p0, k, c_out)
        for dst, part in zip(out, _kernels.neighbor_extremes(y, None)[:4], strict=True):
            dst[p0:p1] = part.view(p1 - p0, c_out)
    hi, r_hi, lo, r_lo = (o.view(b, n, c_out) for o in out)
    return None, (hi, r_hi, lo, r_lo)


def edge_values(x: Tensor, idx: Tensor, gamma: Tensor, beta: Tensor, w_a: Tensor, eps: float,
                mode: int, packed: bool,
                stats: tuple[Tensor, Tensor, int, bool] | None = None,
                full: bool = False) -> dict[str, Any]:
    """Forward values (no gradient): ``extremes``, the max and min over each point's neighbours
    of ``y`` of the module docstring with their first ranks (``(B, N, C_out)`` each), ``y (B,
    N, k, C_out)`` itself with ``full`` (else ``None``), and the BatchNorm quantities ``mean,
    var, invstd, s, t`` (``z = d * s + t``), ``count`` and ``synced``.

    ``stats``: ``(mean, var, count, synced)``, the statistics to normalise with over ``count``
    edges, ``synced`` when they are those of every process's edges
    (:mod:`bingnn.nn.global_batchnorm`: the backward then sums the BatchNorm's reductions over
    the processes, as ``SyncBatchNorm`` does); by default :func:`edge_stats` of this batch."""
    with torch.no_grad():
        b, n, _ = x.shape
        if stats is None:
            mean, var = edge_stats(x, idx)
            count, synced = b * n * idx.shape[-1], False
        else:
            mean, var, count, synced = stats
            mean, var = mean.contiguous(), var.contiguous()
        invstd = torch.rsqrt(var + eps)
        s = (gamma.detach() * invstd).contiguous()
        t = (beta.detach() - mean * s).contiguous()
        y, ext = _edge_products(x, idx, s, t, w_a, mode, packed, fma=False, full=full)
        return {"y": y, "extremes": ext, "mean": mean, "var": var, "invstd": invstd, "s": s,
                "t": t, "count": count, "synced": synced}


def eval_edge_extremes(x: Tensor, idx: Tensor, scale: Tensor, shift: Tensor, w_a: Tensor,
                       mode: int, packed: bool) -> Extremes:
    """``(y_max, rank_max, y_min, rank_min)`` over each point's neighbours of ``y`` of the
    module docstring in eval mode, without gradient: the BatchNorm is ``fma(d, scale, shift)``
    with its running statistics' constants (:func:`bingnn.nn.batchnorm_stats.eval_affine`),
    the arithmetic of PyTorch's CPU kernel, so the signs are the plain path's."""
    with torch.no_grad():
        return _edge_products(x, idx, scale, shift, w_a, mode, packed, fma=True, full=False)[1]


def at_extremes(extremes: Extremes, rank: Tensor) -> Tensor:
    """The value at ``rank`` (``(B, N, C)``), which must be the rank of the max or of the min
    in ``extremes`` (what a neighbour max chooses)."""
    hi, r_hi, lo, r_lo = extremes
    at_hi = rank == r_hi
    if not bool((at_hi | (rank == r_lo)).all()):
        raise ValueError("a rank is neither the max's nor the min's; keep the edge values "
                         "(full=True) to select elsewhere")
    return torch.where(at_hi, hi, lo)


class EdgeDiffSelect(torch.autograd.Function):
    """The module docstring's ``y`` at one neighbour rank per (point, output channel):
    ``rank (B, N, C_out)`` -> ``y[b, i, rank, o]`` ``(B, N, C_out)``, for a max over
    neighbours that follows. Forward values come from :func:`edge_values` (without its edge
    values ``y``, ``rank`` must be the max's or the min's there); the backward costs
    1/k of the dense products and never stores the gradient of all edges' features
    (``edge_diff_select_backward``: per point and block of 16 channels, through the quantizer
    and the BatchNorm), then adds the BatchNorm's batch-sum terms
    (``edge_diff_bn_correction``)."""

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, idx: Tensor, gamma: Tensor, beta: Tensor,  # type: ignore[override]
                w_a: Tensor, rank: Tensor, values: dict[str, Tensor], mode: int,
                clip: float) -> Tensor:
        y = values["y"]
        if y is None:
            sel = at_extremes(values["extremes"], rank)
        else:
            b, n, k, c_out = y.shape
            sel = _kernels.select_rank(y.reshape(b * n, k, c_out),
                                       rank.reshape(b * n, c_out)).view(b, n, c_out)
        ctx.save_for_backward(x, idx, w_a, rank)
        ctx.values = {key: values[key] for key in ("mean", "invstd", "s", "t", "count",
                                                   "synced")}
        ctx.mode, ctx.clip = mode, clip
        return sel

    @staticmethod
    @fp32_backward
    def backward(ctx, gsel: Tensor):  # type: ignore[override]
        x, idx, w_a, rank = ctx.saved_tensors
        v = ctx.values
        b, n, c = x.shape
        th = _kernels.threads()
        need_x = ctx.needs_input_grad[0]
        xn, ixn = x.detach().contiguous().numpy(), idx.contiguous().numpy()
        gx = torch.empty(b, n, c) if need_x else None
        gw = torch.empty(w_a.shape) if ctx.needs_input_grad[4] else None
        sum_gz, sum_gzx = _native.edge_diff_select_backward(
            xn, ixn, v["s"].numpy(), v["t"].numpy(), v["mean"].numpy(), v["invstd"].numpy(),
            ctx.mode, ctx.clip, gsel.contiguous().numpy(), rank.contiguous().numpy(),
            w_a.detach().contiguous().numpy(), None if gx is None else gx.numpy(),
            None if gw is None else gw.numpy(), th)
        sum_gz = torch.from_numpy(sum_gz).float()
        sum_gzx = torch.from_numpy(sum_gzx).float()
        if gx is not None:
            # The BatchNorm's batch sums enter gx: those over every process's edges when the
            # statistics are (d gamma, d beta stay this process's: the data-parallel wrapper
            # averages parameter gradients).
            gz, gzx = sum_gz, sum_gzx
            if v["synced"]:
                both = global_batchnorm.sum_over_processes(torch.cat([gz, gzx]))
                gz, gzx = both[:c], both[c:]
            m = v["count"]
            _native.edge_diff_bn_correction(xn, ixn, v["s"].numpy(), v["mean"].numpy(),
                                            v["invstd"].numpy(), (gz / m).contiguous().numpy(),
                                            (gzx / m).contiguous().numpy(), gx.numpy(), th)
        return (gx, None, sum_gzx if ctx.needs_input_grad[2] else None,
                sum_gz if ctx.needs_input_grad[3] else None, gw, None, None, None, None)


class XorEdgeSelect(torch.autograd.Function):
    r"""As :class:`EdgeDiffSelect` for the XOR edges of a binary XorPointEdgeConv:
    :math:`y_{ij} = (x_j \odot x_i)(-W_a)^\top` at one rank per (point, channel); forward
    values given (``y``), backward at 1/k of the dense cost."""

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, idx: Tensor, w_a: Tensor, rank: Tensor,  # type: ignore[override]
                y: Tensor) -> Tensor:
        b, n, k, c_out = y.shape
        ctx.save_for_backward(x, idx, w_a, rank)
        return _kernels.select_rank(y.reshape(b * n, k, c_out),
                                    rank.reshape(b * n, c_out)).view(b, n, c_out)

    @staticmethod
    @fp32_backward
    def backward(ctx, gsel: Tensor):  # type: ignore[override]
        x, idx, w_a, rank = ctx.saved_tensors
        b, n, c = x.shape
        k = idx.shape[-1]
        gq = torch.empty(b, n, k, c)
        gw = torch.empty(w_a.shape) if ctx.needs_input_grad[2] else None
        neg_w = (-w_a.detach()).contiguous()
        _native.edge_select_backward(
            x.detach().contiguous().numpy(), idx.contiguous().numpy(),
            gsel.contiguous().numpy(), rank.contiguous().numpy(), neg_w.numpy(), gq.numpy(),
            None if gw is None else gw.numpy(), _kernels.threads())
        gx = None
        if ctx.needs_input_grad[0]:
            gx = _kernels.xor_edge_features_backward(gq, x.detach(), idx)
        return gx, None, None if gw is None else gw.neg_(), None, None
