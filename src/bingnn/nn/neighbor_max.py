r"""Max over neighbours of a per-channel function of edge values, without an edge tensor per
operation.

An EdgeConv ends with :math:`x'_{ic} = \max_j f_c(y_{ijc})`, where :math:`f_c` is a chain of
per-channel operations (rescale, PReLU/LeakyReLU, BatchNorm as an affine map). If every
:math:`f_c` is *quasi-convex* — monotone, or V-shaped (decreasing then increasing) — its maximum
over a set of values is reached at the set's smallest or largest element, so

.. math:: \max_j f_c(y_{ijc}) = \max\big(f_c(\max_j y_{ijc}),\ f_c(\min_j y_{ijc})\big)

exactly, in floating point too (rounding is monotone, so each floating-point step keeps the
shape). A rescale by any factor, PReLU/LeakyReLU with any slope and an affine map with a
positive scale keep quasi-convexity; an affine map with a negative scale after a V-shaped
PReLU (negative slope) gives a peak instead, and those channels are computed edge by edge.

The gradient goes to the selected neighbour, as ``torch.max`` sends it to the maximising one:
the first in neighbour order among equal values. (Where :math:`f_c` takes the same value at
two different :math:`y` — e.g. a zero PReLU slope — either neighbour is a valid subgradient and
the fast path may pick another one than the plain ``max`` over edges.)

Edge values come in two forms (:class:`NeighborValues`): factorized,
:math:`y_{ij} = u_{\mathrm{idx}_{ij}} + v_i` (a linear first map, see
:mod:`bingnn.nn.edge_linear`), where only ``(B, N, C)`` tensors carry gradients; or an edge
tensor :math:`y_{ij} = r_{ij} + v_i` with ``r (B, N, k, C)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bingnn.nn import _kernels
from bingnn.nn._amp import fp32_backward, fp32_forward
from bingnn.nn.knn import gather_neighbors

#: A per-channel chain: ``f(y, cols)`` maps ``(..., len(cols))`` values of the channels
#: ``cols`` (all channels when ``None``) elementwise.
Chain = Callable[[Tensor, "Tensor | None"], Tensor]


class NeighborSum(torch.autograd.Function):
    r""":math:`S_i = \sum_{j \in \mathcal{N}(i)} u_j` with a precomputed forward value; the
    backward is the transposed aggregation :math:`\partial u_j = \sum_{i: j \in \mathcal{N}(i)}
    \partial S_i` (no ``(B, N, k, C)`` temporary)."""

    @staticmethod
    @fp32_forward
    def forward(ctx, u: Tensor, idx: Tensor, value: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(idx)
        return value

    @staticmethod
    @fp32_backward
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        return _kernels.neighbor_scatter_sum(grad, idx), None, None


class SelectRank(torch.autograd.Function):
    """``rel (B, N, k, C)``, ``rank (B, N, C)`` -> ``rel[b, i, rank[b, i, c], c]``; the
    backward writes the gradient at the selected ranks of a zero edge tensor in one pass."""

    @staticmethod
    @fp32_forward
    def forward(ctx, rel: Tensor, rank: Tensor) -> Tensor:  # type: ignore[override]
        b, n, k, c = rel.shape
        ctx.save_for_backward(rank)
        ctx.k = k
        return _kernels.select_rank(rel.reshape(b * n, k, c), rank.reshape(b * n, c)).view(
            b, n, c)

    @staticmethod
    @fp32_backward
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (rank,) = ctx.saved_tensors
        b, n, c = g.shape
        out = _kernels.scatter_rank(g.reshape(b * n, c), rank.reshape(b * n, c), ctx.k)
        return out.view(b, n, ctx.k, c), None


class NeighborValues:
    r"""Edge values :math:`y_{ijc}` of a k-NN graph, factorized or as an edge tensor.

    Args:
        v: ``(B, N, C)`` per-centre term :math:`v_i`.
        u: ``(B, N, C)`` per-neighbour term (factorized form), with ``idx``.
        idx: ``(B, N, k)`` neighbour indices (factorized form).
        rel: ``(B, N, k, C)`` per-edge term (edge form).
        rel_extremes: instead of ``rel``, only its ``(max, rank of the max, min, rank of the
            min)`` over the neighbours (``(B, N, C)`` each), with ``k`` and a ``selector``: the
            edge tensor was never stored (enough for :func:`neighbor_max` without peaked
            channels, which selects at those ranks only).
        k: the neighbours per point, with ``rel_extremes``.
        selector: with ``rel`` or ``rel_extremes``, a function ``rank (B, N, C)`` ->
            differentiable ``rel[b, i, rank, c]`` that replaces the gather (``rel`` then needs
            no gradient): a fused backward that knows only one edge per channel is used.
    """

    def __init__(
        self,
        v: Tensor,
        *,
        u: Tensor | None = None,
        idx: Tensor | None = None,
        rel: Tensor | None = None,
        rel_extremes: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
        k: int | None = None,
        selector: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        forms = (u is not None) + (rel is not None) + (rel_extremes is not None)
        if forms != 1 or (u is not None and idx is None):
            raise ValueError("give either u and idx (factorized), rel (edge tensor) or "
                             "rel_extremes with k and a selector")
        if rel_extremes is not None and (selector is None or k is None):
            raise ValueError("rel_extremes needs k and a selector")
        self.v, self.u, self.idx, self.rel = v, u, idx, rel
        self.rel_extremes, self._k = rel_extremes, k
        # Optional differentiable selection of rel at given ranks (rel then holds values only).
        self.selector = selector
        self.neighbor_sum: Tensor | None = None

    @property
    def k(self) -> int:
        if self._k is not None:
            return self._k
        return self.rel.shape[2] if self.rel is not None else self.idx.shape[-1]

    def extremes(self, with_sum: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(y_max, rank_max, y_min, rank_min)``, each ``(B, N, C)``, without gradients: the
        extreme values over the neighbours and the first neighbour rank reaching them. With
        ``with_sum`` (factorized form) also keeps :math:`\\sum_j u_j` in ``neighbor_sum``."""
        if with_sum and self.u is None:
            raise ValueError("with_sum needs the factorized form")
        if self.rel_extremes is not None:
            hi, r_hi, lo, r_lo = self.rel_extremes
        else:
            src = self.rel if self.rel is not None else self.u
            hi, r_hi, lo, r_lo, total = _kernels.neighbor_extremes(src, self.idx, with_sum)
            if with_sum:
                self.neighbor_sum = total
        with torch.no_grad():
            v = self.v.detach()
            return hi + v, r_hi, lo + v, r_lo

    def select(self, rank: Tensor) -> Tensor:
        """Differentiable :math:`y_{i, \\mathrm{rank}_{ic}, c}`: ``rank (B, N, C)`` ->
        ``(B, N, C)``."""
        if self.selector is not None:
            return self.selector(rank) + self.v
        if self.rel is not None:
            return SelectRank.apply(self.rel, rank) + self.v
        j = self.idx.gather(2, rank)
        return self.u.gather(1, j) + self.v

    def edges(self, cols: Tensor) -> Tensor:
        """Differentiable ``(B, N, k, len(cols))`` edge values of the channels ``cols``."""
        if self.selector is not None:
            raise ValueError("edge values behind a selector carry no gradient")
        if self.rel is not None:
            return self.rel[..., cols] + self.v[..., cols].unsqueeze(2)
        return gather_neighbors(self.u[..., cols], self.idx) + self.v[..., cols].unsqueeze(2)

    def sum_u(self) -> Tensor:
        r"""Differentiable :math:`\sum_{j \in \mathcal{N}(i)} u_j` (after
        ``extremes(with_sum=True)``)."""
        if self.neighbor_sum is None:
            raise RuntimeError("call extremes(with_sum=True) first")
        return NeighborSum.apply(self.u, self.idx, self.neighbor_sum)


def neighbor_max(
    values: NeighborValues,
    f: Chain,
    peaked: Tensor | None = None,
    extremes: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    r""":math:`\max_j f_c(y_{ijc})` for quasi-convex :math:`f_c` (module docstring).

    Args:
        values: the edge values.
        f: the per-channel chain, ``f(y, cols)``.
        peaked: optional ``(C,)`` bool, channels where :math:`f_c` may peak inside the range
            (not quasi-convex); they are computed edge by edge.
        extremes: ``values.extremes()`` if the caller has it already.

    Returns:
        ``(B, N, C)``, differentiable with respect to everything ``values`` and ``f`` depend on.
    """
    rank = choose_rank(extremes if extremes is not None else values.extremes(), f)
    out = f(values.select(rank), None)
    return fix_peaked(out, values, f, peaked)


def choose_rank(extremes: tuple[Tensor, Tensor, Tensor, Tensor], f: Chain) -> Tensor:
    """Rank of the neighbour where ``f`` is largest, from ``(y_max, rank_max, y_min,
    rank_min)``: the extreme with the larger ``f``, at equal ``f`` the earlier one."""
    with torch.no_grad():
        y_hi, r_hi, y_lo, r_lo = extremes
        f_hi, f_lo = f(y_hi, None), f(y_lo, None)
        take_hi = (f_hi > f_lo) | ((f_hi == f_lo) & (r_hi <= r_lo))
        return torch.where(take_hi, r_hi, r_lo)


def fix_peaked(out: Tensor, values: NeighborValues, f: Chain, peaked: Tensor | None) -> Tensor:
    """Replace the ``peaked`` channels of ``out`` by their edge-by-edge max."""
    if peaked is None or not bool(peaked.any()):
        return out
    cols = peaked.nonzero().flatten()
    full = f(values.edges(cols), cols).max(dim=2).values
    return out.index_copy(-1, cols, full)
