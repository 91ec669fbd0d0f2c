"""XorPointEdgeConv: EdgeConv on point sets with binary node features and XOR edge features
(variants BF1, BF2)."""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn import _kernels, edge_diff_quant, global_batchnorm, quantizers
from bingnn.nn.activations import ChannelPReLU, rescale_prelu
from bingnn.nn.batchnorm_stats import bn_affine, update_running_stats, uses_batch_stats
from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.binary_matmul import XorEdgeLinear, is_pm1, packed_route, pm1_linear
from bingnn.nn.centering import ChannelBatchNorm, get_centering
from bingnn.nn.edge_batchnorm import EdgeActStatsSelect, check_count, forward_replaced
from bingnn.nn.edge_features import edge_features
from bingnn.nn.edge_linear import linear_parts
from bingnn.nn.global_batchnorm import batch_moments
from bingnn.nn.knn import gather_neighbors, layer_graph
from bingnn.nn.neighbor_max import NeighborValues, choose_rank, fix_peaked, neighbor_max
from bingnn.nn.quantizers import Quantizer
from bingnn.nn.rescale import LearnedRescale


class XorPointEdgeConv(nn.Module):
    r"""EdgeConv on point sets whose node features are bits, so the next graph lives in Hamming
    space.

    Version 1 (BF1) normalises node features after the max:

    .. math::
        x_i' = q\Big(\mathrm{bal}\big(\mathrm{BN}_{1d}(\max_{j} \mathrm{PReLU}(\alpha \odot
            e_{ij} \, q_w(W)^\top))\big)\Big)

    Version 2 (BF2) normalises edge features before the max:

    .. math::
        x_i' = q\Big(\mathrm{bal}\big(\max_{j} \mathrm{BN}_{2d}(\mathrm{PReLU}(\alpha \odot
            e_{ij} \, q_w(W)^\top))\big)\Big)

    with edge features :math:`e_{ij} = [x_j \oplus x_i,\ x_i]` where, on +-1 values,
    :math:`x_j \oplus x_i = -x_j x_i` (``edge_op="xor"``), or :math:`[x_j - x_i, x_i]`
    (``edge_op="sub"``: the first layer on xyz, and the tanh stage), ``bal`` an optional mean or
    median balance and ``q`` the output quantizer (sign; tanh in the pseudo-quantized stage).

    With ``max_offset`` (version 2 only) a constant :math:`\delta` is subtracted after the max:
    :math:`q(\mathrm{bal}(\max_j \mathrm{BN}_{2d}(\cdot) - \delta))`. The max of ``k``
    standardised edge values sits well above 0 (for independent ones its median is
    :math:`\Phi^{-1}(2^{-1/k})`, 1.82 for k = 20, :func:`max_offset_for`), so without an offset
    most output bits are +1 and many outputs lie outside the straight-through window
    :math:`|x| \le 1`, where no gradient passes. Subtracting an offset moves the bits towards
    balance (maximum entropy): the entropy-maximizing aggregation of BiPointNet (Qin et al.,
    ICLR 2021) applied to the neighbour max. The edges of one point share its centre term
    :math:`W_b x_i`, so the balancing offset is smaller than the independent-value median.
    The input is expected to be quantized already (the previous layer's output), so no
    quantizer is applied to the edge features.

    With ``prelu_shift`` the linear map gets a learned real bias :math:`b`, so the activation is
    :math:`\mathrm{PReLU}(\alpha \odot (e_{ij} q_w(W)^\top + b))`: ReActNet's RPReLU (Liu et
    al., ECCV 2020), :math:`\mathrm{PReLU}(t - \gamma) + \zeta`, with :math:`\gamma = -\alpha
    \odot b`; its output shift :math:`\zeta` would be cancelled by the BatchNorm that follows,
    and ReActNet's other lever, a learned threshold before the sign (RSign), is the BatchNorm's
    bias already (BF1: it comes right before the sign; BF2: a per-channel shift commutes with
    the max).

    Computation (the fast path; :func:`bingnn.nn.reference_mode` runs the plain one). The
    centre half of the linear map, :math:`W_b x_i`, is computed per node; with ``"sub"`` edges
    the whole map is linear in the edge feature and is computed per node
    (:mod:`bingnn.nn.edge_linear`; for xyz in the engine's exact float32 order), with
    ``"xor"`` edges the relative half stays edge-wise (as
    :math:`(x_j \odot x_i)(-W_a)^\top`). Rescale, PReLU and BN2d act after the max, at the
    extremes over the neighbours (:mod:`bingnn.nn.neighbor_max`); BN2d's training statistics
    over the edges come from :class:`~bingnn.nn.edge_batchnorm.EdgeActStatsSelect`. Per-point or
    per-neighbour rescaling uses the plain path.

    Args:
        in_channels, out_channels: feature sizes.
        k: neighbours per point.
        version: 1 (BF1) or 2 (BF2).
        knn_metric: ``"hamming"`` (exact on bits) or ``"l2"``.
        edge_op: ``"xor"`` or ``"sub"``.
        kernel_quantizer: weight quantizer.
        output_quantizer: quantizer of the node features produced (``"ste_sign"``).
        balance: ``"none"``, ``"mean"`` or ``"median"`` centering before the output quantizer.
        prelu: PReLU after the rescaling.
        rescale_points, rescale_neighbors: optional per-point / per-neighbour rescaling.
        max_offset: :math:`\delta` above (version 2; default 0: none).
        prelu_shift: a learned bias of the linear map (above; default off).

    Shapes:
        ``x (B, N, C_in)`` -> ``(B, N, C_out)`` (+ ``(B, N, k)`` indices with
        ``return_graph=True``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 20,
        version: int = 2,
        knn_metric: str = "hamming",
        edge_op: str = "xor",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        output_quantizer: str | Quantizer | None = "ste_sign",
        balance: str | None = "none",
        prelu: bool = True,
        rescale_points: int | None = None,
        rescale_neighbors: int | None = None,
        max_offset: float = 0.0,
        prelu_shift: bool = False,
    ) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"XorPointEdgeConv version must be 1 or 2, got {version}")
        if max_offset and version != 2:
            raise ValueError("max_offset applies to version 2 (BatchNorm before the max); "
                             "version 1 normalises after the max")
        if not math.isfinite(max_offset):
            raise ValueError(f"max_offset must be finite, got {max_offset}")
        if balance not in (None, "none", "mean", "median"):
            raise ValueError(f"balance must be 'none', 'mean' or 'median', got {balance!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.version = version
        self.knn_metric = knn_metric
        self.edge_op = edge_op
        self.linear = BinaryLinear(2 * in_channels, out_channels, kernel_quantizer=kernel_quantizer,
                                   bias=prelu_shift)
        self.rescale = LearnedRescale(out_channels, rescale_points, rescale_neighbors)
        self.act = ChannelPReLU(out_channels) if prelu else None
        self.bn = ChannelBatchNorm(out_channels)
        self.balance = get_centering(balance or "none", out_channels)
        self.output_quantizer = quantizers.get(output_quantizer)
        self.max_offset = float(max_offset)

    def reset_parameters(self) -> None:
        for m in (self.linear, self.rescale, self.act, self.bn):
            if m is not None:
                m.reset_parameters()

    def forward(self, x: Tensor, return_graph: bool = False):
        h, idx = self.pre_activation(x)
        out = self.quantize(h)
        return (out, idx) if return_graph else out

    def pre_activation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The real value before the balance and the output quantizer, ``(B, N, C_out)``, and
        the layer's graph ``(B, N, k)``; :meth:`forward` is ``quantize`` of it (a model with
        real-valued shortcuts adds to it in between)."""
        idx = layer_graph(x, self.k, self.knn_metric, self.in_channels, type(self).__name__)
        if _flags.is_reference_mode() or not self.has_fast_path():
            h = self.forward_reference(x, idx)
        else:
            h = self.forward_fast(x, idx)
        if self.max_offset:
            h = h - self.max_offset
        return h, idx

    def quantize(self, h: Tensor) -> Tensor:
        """The node features from :meth:`pre_activation`'s value: balance, then quantizer."""
        return self.output_quantizer(self.balance(h))

    def has_fast_path(self) -> bool:
        """Whether :meth:`forward_fast` applies (channel rescaling only, known edge op, no
        BatchNorm forward replaced on the instance other than the data-parallel trainer's:
        see :func:`bingnn.nn.edge_batchnorm.forward_replaced`)."""
        r = self.rescale
        return (r.point_scale is None and r.neighbor_scale is None
                and self.edge_op in ("sub", "xor") and not forward_replaced(self.bn))

    def forward_reference(self, x: Tensor, idx: Tensor) -> Tensor:
        """The plain formulation up to the balance: linear map, rescale, PReLU (and BN2d) on
        every ``(B, N, k, C)`` edge, then the max (and BN1d)."""
        h = self.rescale(self.linear(edge_features(x, idx, self.edge_op)))
        if self.act is not None:
            h = self.act(h)
        if self.version == 2:
            return self.bn(h).max(dim=2).values
        return self.bn(h.max(dim=2).values)

    # ------------------------------------------------------------------ fast path

    def forward_fast(self, x: Tensor, idx: Tensor) -> Tensor:
        """:meth:`forward_reference`'s function, with the per-node and after-the-max
        computations of the class docstring."""
        lin = self.linear
        if lin.training:
            lin.clip_weights()
        w = lin.quantized_weight()
        c = self.in_channels
        bias = lin.bias
        # With running statistics the bias is added to the finished pre-activation y (an exact
        # integer in stage 3), as the exported predicates tabulate y + b, so the engine's bits
        # equal these; with batch statistics it rides on the per-node term, which the fused
        # statistics kernels read.
        late_bias = bias if bias is not None and not uses_batch_stats(self.bn) else None
        if late_bias is not None:
            bias = None
        if self.edge_op == "sub":
            u, v = linear_parts(x, w)
            values = NeighborValues(v if bias is None else v + bias, u=u, idx=idx)
        else:
            # [x_j xor x_i] W_a^T = (x_j * x_i) (-W_a)^T: one product per edge, sign exact;
            # with +-1 inputs and weights, XOR and popcount on packed bits.
            packed = lin.binary_weights and packed_route(x, w) and is_pm1(x)
            y_self = pm1_linear(x, w[:, c:], packed) if lin.binary_weights else F.linear(
                x, w[:, c:])
            if bias is not None:  # the per-node term carries the bias of every edge
                y_self = y_self + bias
            w_a = w[:, :c]
            if self.version == 1 and torch.is_grad_enabled() and edge_diff_quant.applies(x):
                # Only the max over neighbours reads the edge values: a backward at 1/k cost.
                with torch.no_grad():
                    y_rel = XorEdgeLinear.apply(x, idx, w_a, packed)

                def selector(rank: Tensor) -> Tensor:
                    return edge_diff_quant.XorEdgeSelect.apply(x, idx, w_a, rank, y_rel)

                values = NeighborValues(y_self, rel=y_rel, selector=selector)
            else:
                values = NeighborValues(y_self, rel=XorEdgeLinear.apply(x, idx, w_a, packed))
        alpha = self.rescale.channel_scale
        slope = self.act.weight if self.act is not None else None

        def act(y: Tensor, cols: Tensor | None) -> Tensor:
            if late_bias is not None:
                y = y + (late_bias if cols is None else late_bias[cols])
            if cols is None:
                return rescale_prelu(y, alpha, slope)
            y = y * alpha[cols]
            if slope is not None:
                y = torch.where(y >= 0, y, y * (slope if cols is None else slope[cols]))
            return y

        if self.version == 1:
            return self.bn(neighbor_max(values, act))
        return self._bn2_max(values, idx, act, alpha, slope)

    def _bn2_max(self, values: NeighborValues, idx: Tensor, act, alpha: Tensor,
                 slope: Tensor | None) -> Tensor:
        """BF2: max over neighbours of BN2d(PReLU(rescale(y)))."""
        bn = self.bn
        if uses_batch_stats(bn):
            return self._bn2_max_train(values, idx, act, alpha, slope)

        def f(y: Tensor, cols: Tensor | None) -> Tensor:
            h = act(y, cols)
            if cols is None:
                return bn(h)
            flat = h.reshape(-1, cols.numel())
            return F.batch_norm(
                flat, bn.running_mean[cols], bn.running_var[cols],
                None if bn.weight is None else bn.weight[cols],
                None if bn.bias is None else bn.bias[cols], False, 0.0, bn.eps,
            ).reshape(h.shape)

        sign = bn.weight.detach() if bn.weight is not None else None
        return neighbor_max(values, f, _peaked(slope, sign))

    def _bn2_max_train(self, values: NeighborValues, idx: Tensor, act, alpha: Tensor,
                       slope: Tensor | None) -> Tensor:
        """BF2 in training: BN2d with the statistics of every edge's activation, computed in
        one pass without storing the activations; the max at the extremes."""
        bn = self.bn
        if values.rel is None:  # the statistics need every edge value
            values = NeighborValues(values.v, rel=gather_neighbors(values.u, idx))
        rel, v = values.rel, values.v
        b, n, k, c = rel.shape
        count = b * n * k
        check_count(count, c)
        local0 = _kernels.edge_act_stats(rel.reshape(b * n, k, c), v.reshape(b * n, c),
                                         alpha, slope)
        with torch.no_grad():
            # the statistics normalised with (over every process's edges under the trainer's
            # global-batch BatchNorm) decide which neighbour gives the max
            mean0, var0, total = batch_moments(bn, *local0, count)
            update_running_stats(bn, mean0, var0, total)
            s0, t0 = bn_affine(bn, mean0, var0)
            rank = choose_rank(values.extremes(), lambda y, cols: act(y, cols) * s0 + t0)
        mean, var, sel = EdgeActStatsSelect.apply(rel, v, alpha, slope, *local0, rank)
        if global_batchnorm.active(bn):  # again, now with the gradient
            mean, var, _ = batch_moments(bn, mean, var, count)
        s, t = bn_affine(bn, mean, var)

        def f(y: Tensor, cols: Tensor | None) -> Tensor:
            h = act(y, cols)
            return h * s + t if cols is None else h * s[cols] + t[cols]

        out = f(sel + v, None)
        return fix_peaked(out, values, f, _peaked(slope, s0))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.k}, version={self.version}, "
            f"knn={self.knn_metric}, edge_op={self.edge_op}"
            + (f", max_offset={self.max_offset:.4f}" if self.max_offset else "")
            + (", prelu_shift=True" if self.linear.bias is not None else "")
        )


def max_offset_for(k: int) -> float:
    r"""Median of the max of ``k`` independent standard normal values,
    :math:`\Phi^{-1}(2^{-1/k})`: the offset that balances the signs after a neighbour max of
    standardised edge values (:class:`XorPointEdgeConv`'s ``max_offset``)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return statistics.NormalDist().inv_cdf(2.0 ** (-1.0 / k))


def _peaked(slope: Tensor | None, bn_scale: Tensor | None) -> Tensor | None:
    """Channels where rescale -> PReLU -> BatchNorm peaks inside its range: a negative PReLU
    slope makes the activation V-shaped, a negative BatchNorm scale turns the V into a peak, whose
    max over the neighbours is not at an extreme."""
    if slope is None or bn_scale is None:
        return None
    return (slope.detach() < 0) & (bn_scale.detach() < 0)
