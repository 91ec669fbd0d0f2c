r"""BatchNorm over the edges of a k-NN graph, without a normalised edge tensor.

A BatchNorm on ``(B, N, k, C)`` edge values is, per channel, the affine map
:math:`z \mapsto s z + t` with :math:`s = \gamma / \sqrt{\sigma^2 + \epsilon}` and
:math:`t = \beta - \mu s`: in training :math:`\mu, \sigma^2` are the mean and (biased)
variance over all :math:`M = B N k` edges, in eval mode the running statistics. The fast
EdgeConvs therefore need only these statistics (with their gradients) and apply the affine map
to the ``(B, N, C)`` values that survive the max over neighbours
(:mod:`bingnn.nn.neighbor_max`). The running statistics are updated as ``nn.BatchNorm1d`` updates
them (momentum or cumulative average, variance with Bessel's correction over the :math:`M`
edges), so a model trained on the fast path has the same state as one trained on the plain one.
Under the data-parallel trainer the local statistics are combined over the processes
(:func:`bingnn.nn.global_batchnorm.batch_moments`) before they are used.

* :func:`linear_edge_stats`: statistics of factorized values :math:`y_{ij} = u_j + v_i` from
  per-node sums (no edge tensor).
* :func:`edge_moments`: mean and biased variance of an edge tensor ``(B, N, k, C)`` (one
  native pass in float64 instead of ``torch.var_mean``'s strided reduction, a one-pass
  backward).
* :class:`EdgeActStatsSelect`: statistics of :math:`h = \mathrm{PReLU}(\alpha (r_{ij} + v_i))`
  over an edge tensor ``r`` (computed by :func:`bingnn.nn._kernels.edge_act_stats`), with a
  hand-written backward that recomputes ``h`` instead of storing it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bingnn.nn import _kernels, global_batchnorm
from bingnn.nn._amp import fp32_backward, fp32_forward
from bingnn.nn.batchnorm_stats import uses_batch_stats
from bingnn.nn.neighbor_max import NeighborValues


def forward_replaced(bn: nn.Module) -> bool:
    """Whether ``bn`` normalises with batch statistics through a ``forward`` replaced on the
    instance by something other than the data-parallel trainer's global-batch BatchNorm
    (:mod:`bingnn.nn.global_batchnorm`, whose statistics the fast convolutions combine over the
    processes themselves, through :func:`~bingnn.nn.global_batchnorm.batch_moments`). The fast
    convolutions compute the statistics themselves, so for such a layer they run the plain
    formulation, which calls that forward."""
    return (uses_batch_stats(bn) and "forward" in vars(bn)
            and not global_batchnorm.converted(bn))


def check_count(count: int, channels: int) -> None:
    if count <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size "
            f"[{count}, {channels}]"
        )


def linear_edge_stats(values: NeighborValues) -> tuple[Tensor, Tensor]:
    r"""Mean and biased variance over the :math:`M = B N k` edges of factorized values
    :math:`y_{ij} = u_{\mathrm{idx}_{ij}} + v_i`, from per-node sums, differentiable.

    With :math:`d_j` the number of edges that pick :math:`j` as neighbour,
    :math:`S_i = \sum_{j \in \mathcal{N}(i)} u_j`, :math:`\mu_u = \sum_j d_j u_j / M`,
    :math:`\mu_v = \sum_i v_i / (B N)`, :math:`\tilde u = u - \mu_u`, :math:`\tilde v = v - \mu_v`:

    .. math::
        \mu = \mu_u + \mu_v, \qquad
        \sigma^2 = \frac{1}{M}\Big(\sum_j d_j \tilde u_j^2
            + 2 \sum_i \tilde v_i \cdot (S_i - k \mu_u) + k \sum_i \tilde v_i^2\Big)

    (both terms centred, so no large cancellation), accumulated in float64. Needs
    ``values.extremes(with_sum=True)`` first (it keeps :math:`S`)."""
    u, v, idx = values.u, values.v, values.idx
    b, n, k = idx.shape
    m = b * n * k
    wide = torch.float64
    deg = torch.zeros(b, n, dtype=wide, device=idx.device)
    deg.scatter_add_(1, idx.reshape(b, n * k), torch.ones(1, dtype=wide, device=idx.device)
                     .expand(b, n * k))
    deg = deg.unsqueeze(-1)
    uw, vw = u.to(wide), v.to(wide)
    mu_u = (deg * uw).sum((0, 1)) / m
    mu_v = vw.mean((0, 1))
    uc, vc = uw - mu_u, vw - mu_v
    s = values.sum_u().to(wide) - k * mu_u
    var = ((deg * uc * uc).sum((0, 1)) + 2.0 * (vc * s).sum((0, 1))
           + k * (vc * vc).sum((0, 1))) / m
    return (mu_u + mu_v).to(u.dtype), var.clamp_min(0.0).to(u.dtype)


class EdgeMoments(torch.autograd.Function):
    r"""``rel (B, N, k, C)`` -> per-channel mean and biased variance over the :math:`M = B N k`
    edges. Backward: :math:`\partial r = \partial\mu / M + 2\,\partial\sigma^2 (r - \mu) / M`
    as one fused multiply-add over ``rel``."""

    @staticmethod
    @fp32_forward
    def forward(ctx, rel: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        b, n, k, c = rel.shape
        rows = rel.reshape(b * n, k, c)
        # The activation-statistics kernel with alpha = 1, v = 0 and no PReLU is the plain
        # moments of rel; v is k times smaller than rel.
        mean, var = _kernels.edge_act_stats(
            rows, rel.new_zeros(b * n, c), rel.new_ones(c), None)
        ctx.save_for_backward(rel, mean)
        return mean, var

    @staticmethod
    @fp32_backward
    def backward(ctx, g_mean: Tensor | None, g_var: Tensor | None):  # type: ignore[override]
        rel, mean = ctx.saved_tensors
        m = rel.shape[0] * rel.shape[1] * rel.shape[2]
        zero = torch.zeros_like(mean)
        c1 = g_mean / m if g_mean is not None else zero
        c2 = g_var * (2.0 / m) if g_var is not None else zero
        return torch.addcmul(c1 - c2 * mean, rel, c2)


def edge_moments(rel: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, var)`` (biased) per channel of the edge tensor ``rel (B, N, k, C)``,
    differentiable; ``torch.var_mean`` where the native kernels do not apply."""
    if not _kernels.use_native(rel):
        var, mean = torch.var_mean(rel.reshape(-1, rel.shape[-1]), dim=0, correction=0)
        return mean, var
    return EdgeMoments.apply(rel)


class EdgeActStatsSelect(torch.autograd.Function):
    r"""Mean and biased variance over all edges of
    :math:`h_{ij} = \mathrm{PReLU}(\alpha \odot (r_{ij} + v_i))` (``slope=None``: no PReLU),
    and the selected edge values :math:`r_{i,\mathrm{rank}_{ic},c}`, with one fused backward.

    Forward: ``rel (B, N, k, C)``, ``v (B, N, C)``, ``alpha (C)``, ``slope (C)`` or ``None``,
    the statistics ``mean, var (C)`` already computed without gradient
    (:func:`bingnn.nn._kernels.edge_act_stats`), ``rank (B, N, C)`` -> ``mean, var, sel``.
    Backward: with :math:`\partial h = \partial\mu / M + 2 \partial\sigma^2 (h - \mu) / M`
    recomputed edge by edge (``h`` is never stored), the gradient of ``sel`` scattered to the
    selected ranks in the same pass."""

    @staticmethod
    @fp32_forward
    def forward(ctx, rel: Tensor, v: Tensor, alpha: Tensor, slope: Tensor | None,  # type: ignore[override]
                mean: Tensor, var: Tensor, rank: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(rel, v, alpha, slope, mean, rank)
        ctx.has_slope = slope is not None
        b, n, k, c = rel.shape
        sel = _kernels.select_rank(rel.reshape(b * n, k, c), rank.reshape(b * n, c))
        return mean.clone(), var.clone(), sel.view(b, n, c)

    @staticmethod
    @fp32_backward
    def backward(ctx, g_mean: Tensor | None, g_var: Tensor | None,  # type: ignore[override]
                 g_sel: Tensor | None):
        rel, v, alpha, slope, mean, rank = ctx.saved_tensors
        if not ctx.has_slope:
            slope = None
        b, n, k, c = rel.shape
        m = b * n * k
        zero = torch.zeros(c, dtype=rel.dtype, device=rel.device)
        c1 = g_mean / m if g_mean is not None else zero
        c2 = g_var * (2.0 / m) if g_var is not None else zero
        grad_rel, grad_v, g_alpha, g_slope = _kernels.edge_act_stats_backward(
            rel.reshape(b * n, k, c), v.reshape(b * n, c), alpha, slope, mean, c1, c2,
            None if g_sel is None else rank.reshape(b * n, c),
            None if g_sel is None else g_sel.reshape(b * n, c))
        return (grad_rel.view(b, n, k, c), grad_v.view(b, n, c), g_alpha,
                g_slope if slope is not None else None, None, None, None)
