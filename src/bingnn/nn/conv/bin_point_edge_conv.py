"""BinPointEdgeConv: EdgeConv on point sets with binary blocks and real-valued node features
(variant RF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn import edge_diff_quant, global_batchnorm
from bingnn.nn.activations import rescale_prelu
from bingnn.nn.batchnorm_stats import (
    bn_affine,
    eval_affine,
    update_running_stats,
    uses_batch_stats,
)
from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.binary_matmul import pm1_linear
from bingnn.nn.centering import ChannelBatchNorm, NoCenter
from bingnn.nn.edge_batchnorm import check_count, edge_moments, forward_replaced
from bingnn.nn.edge_features import edge_features
from bingnn.nn.edge_linear import linear_parts
from bingnn.nn.global_batchnorm import batch_moments
from bingnn.nn.knn import gather_neighbors, layer_graph
from bingnn.nn.neighbor_max import NeighborValues, neighbor_max
from bingnn.nn.quantizers import Identity, Quantizer, SteSign, Tanh


class BinPointEdgeConv(nn.Module):
    r"""EdgeConv on point sets whose edge MLP is a binary block; node features and the graph
    stay real.

    .. math::
        x_i' = \max_{j \in \mathcal{N}_k(i)} \mathrm{PReLU}\Big(\alpha \odot
            \big(q_a(\mathrm{BN}([x_j - x_i,\ x_i])) \, q_w(W)^\top\big)\Big)

    This is the "RF" variant of Bahri et al. (2021): activations entering the binary linear map
    are signs of batch-normalised edge features, the k-NN graph is built on the real node
    features (Euclidean by default).

    Computation (the fast path; :func:`bingnn.nn.reference_mode` runs the plain one). The
    quantizer acts on the edge feature, so its relative half :math:`x_j - x_i` stays edge-wise;
    the centre half :math:`q_a(\mathrm{BN}(x_i))` is the same for all ``k`` edges of a point
    and is computed per node (its BatchNorm statistics over the edges equal those over the
    points). With an identity quantizer (the real xyz layer) the whole map is linear in the
    edge feature and is computed per node with the BatchNorm folded in
    (:mod:`bingnn.nn.edge_linear`; for xyz in the engine's exact float32 order). Rescale and
    PReLU act after the max at the extremes over the neighbours
    (:mod:`bingnn.nn.neighbor_max`). Per-point/per-neighbour rescaling and mean/median
    centering use the plain path.

    Args:
        in_channels, out_channels: feature sizes.
        k: neighbours per point.
        knn_metric: metric of the k-NN graph (``"l2"`` default).
        input_quantizer: quantizer of the edge features (``"ste_sign"``; ``"tanh"`` in the
            pseudo-quantized stage; ``"identity"`` on the first layer, whose xyz input stays real).
        kernel_quantizer: weight quantizer.
        centering: centering of the edge features before the quantizer (``"batchnorm"``).
        prelu: PReLU inside the block.
        rescale_points, rescale_neighbors: optional per-point / per-neighbour rescaling
            (they fix N and k).

    Shapes:
        ``x (B, N, C_in)`` -> ``(B, N, C_out)`` (+ ``(B, N, k)`` indices with
        ``return_graph=True``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 20,
        knn_metric: str = "l2",
        input_quantizer: str | Quantizer | None = "ste_sign",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        centering: str | None = "batchnorm",
        prelu: bool = True,
        rescale_points: int | None = None,
        rescale_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.knn_metric = knn_metric
        self.block = BinaryBlock(
            2 * in_channels,
            out_channels,
            input_quantizer=input_quantizer,
            kernel_quantizer=kernel_quantizer,
            centering=centering,
            rescale_points=rescale_points,
            rescale_neighbors=rescale_neighbors,
            prelu=prelu,
        )

    def reset_parameters(self) -> None:
        self.block.reset_parameters()

    def forward(self, x: Tensor, return_graph: bool = False):
        idx = layer_graph(x, self.k, self.knn_metric, self.in_channels, type(self).__name__)
        if _flags.is_reference_mode() or not self.has_fast_path():
            out = self.forward_reference(x, idx)
        else:
            out = self.forward_fast(x, idx)
        return (out, idx) if return_graph else out

    def has_fast_path(self) -> bool:
        """Whether :meth:`forward_fast` applies (BatchNorm or no centering, channel rescaling
        only, no BatchNorm forward replaced on the instance other than the data-parallel
        trainer's: see :func:`bingnn.nn.edge_batchnorm.forward_replaced`)."""
        b = self.block
        plain_rescale = b.rescale is None or (
            b.rescale.point_scale is None and b.rescale.neighbor_scale is None
        )
        return (plain_rescale and isinstance(b.center, (ChannelBatchNorm, NoCenter))
                and not forward_replaced(b.center))

    def forward_reference(self, x: Tensor, idx: Tensor) -> Tensor:
        """The plain formulation: the binary block on every ``(B, N, k, 2C)`` edge feature."""
        return self.block(edge_features(x, idx, "sub")).max(dim=2).values

    # ------------------------------------------------------------------ fast path

    def forward_fast(self, x: Tensor, idx: Tensor) -> Tensor:
        b = self.block
        if b.linear.training:
            b.linear.clip_weights()
        w = b.linear.quantized_weight()
        if isinstance(b.input_quantizer, Identity):
            values = self._linear_values(x, idx, w)
        else:
            values = self._quantized_values(x, idx, w)
        alpha = b.rescale.channel_scale if b.rescale is not None else None
        slope = b.act.weight if b.act is not None else None

        def f(y: Tensor, cols: Tensor | None) -> Tensor:
            if alpha is not None and cols is None:
                return rescale_prelu(y, alpha, slope)
            if alpha is not None:
                y = y * (alpha if cols is None else alpha[cols])
            if slope is not None:
                y = torch.where(y >= 0, y, y * (slope if cols is None else slope[cols]))
            return y

        return neighbor_max(values, f)

    def _edge_bn(self, rel: Tensor, node: Tensor) -> tuple[Tensor, Tensor]:
        """BatchNorm of the edge feature ``[rel, node]`` (``rel (B, N, k, C)``, ``node
        (B, N, C)``): the normalised halves, exactly as one ``ChannelBatchNorm(2C)`` over the
        ``B N k`` edges (in eval mode with PyTorch's kernel, element for element)."""
        bn = self.block.center
        c = self.in_channels
        if isinstance(bn, NoCenter):
            return rel, node
        lo, hi = slice(0, c), slice(c, 2 * c)
        if not uses_batch_stats(bn):
            return self._eval_bn(rel, lo), self._eval_bn(node, hi)
        count = rel.shape[0] * rel.shape[1] * rel.shape[2]
        check_count(count, 2 * c)
        mean_r, var_r = edge_moments(rel)
        # The centre half appears k times per point: its edge statistics are its point ones.
        var_n, mean_n = torch.var_mean(node.reshape(-1, c), dim=0, correction=0)
        mean, var, count = batch_moments(bn, torch.cat([mean_r, mean_n]),
                                         torch.cat([var_r, var_n]), count)
        update_running_stats(bn, mean, var, count)
        s, t = bn_affine(bn, mean, var)
        return torch.addcmul(t[lo], rel, s[lo]), torch.addcmul(t[hi], node, s[hi])

    def _eval_bn(self, t: Tensor, cols: slice) -> Tensor:
        """The channels ``cols`` of the edge feature's BatchNorm in eval mode on ``t (..., C)``,
        by PyTorch's kernel."""
        bn = self.block.center

        def part(name: str) -> Tensor | None:
            v = getattr(bn, name)
            return None if v is None else v[cols]

        return F.batch_norm(t.reshape(-1, self.in_channels), part("running_mean"),
                            part("running_var"), part("weight"), part("bias"), False, 0.0,
                            bn.eps).reshape(t.shape)

    def _half_products(self, q_values: Tensor, w_half: Tensor) -> Tensor:
        """Quantized values of one half of the edge feature times that half's weights: packed
        products when both are +-1."""
        q = self.block.input_quantizer
        if self.block.linear.binary_weights:
            return pm1_linear(q_values, w_half, q.is_binary)
        return F.linear(q_values, w_half)

    def _quantized_values(self, x: Tensor, idx: Tensor, w: Tensor) -> NeighborValues:
        """A quantizer on the edge feature: the relative half edge-wise, the centre half per
        node."""
        q = self.block.input_quantizer
        c = self.in_channels
        fused = self._fused_values(x, idx, w)
        if fused is not None:
            return fused
        rel, node = self._edge_bn(gather_neighbors(x, idx) - x.unsqueeze(2), x)
        return NeighborValues(self._half_products(q(node), w[:, c:]),
                              rel=self._half_products(q(rel), w[:, :c]))

    def _fused_values(self, x: Tensor, idx: Tensor, w: Tensor) -> NeighborValues | None:
        """CPU float32, BatchNorm on the edges, a sign or tanh quantizer: the relative half by
        the fused kernels (:mod:`bingnn.nn.edge_diff_quant`), the centre half per node, in
        training with batch statistics, or in eval mode where no gradient is needed (a frozen
        teacher, validation); ``None`` where they do not apply."""
        bn, q = self.block.center, self.block.input_quantizer
        if not (isinstance(bn, ChannelBatchNorm) and bn.affine
                and isinstance(q, (SteSign, Tanh))
                and edge_diff_quant.applies(x, tanh=isinstance(q, Tanh))):
            return None
        if not uses_batch_stats(bn):
            return self._fused_eval_values(x, idx, w) if not self._needs_grad(x, w) else None
        c = self.in_channels
        count = idx.numel()
        check_count(count, 2 * c)
        binary = self.block.linear.binary_weights
        mode = 0 if isinstance(q, SteSign) else 1
        gamma, beta, w_a = bn.weight[:c], bn.bias[:c], w[:, :c]
        mean_r, var_r = edge_diff_quant.edge_stats(x, idx)
        # The centre half appears k times per point: its edge statistics are its point ones.
        var_n, mean_n = torch.var_mean(x.reshape(-1, c), dim=0, correction=0)
        mean, var, count = batch_moments(bn, torch.cat([mean_r, mean_n]),
                                         torch.cat([var_r, var_n]), count)
        update_running_stats(bn, mean, var, count)
        vals = edge_diff_quant.edge_values(
            x, idx, gamma, beta, w_a, bn.eps, mode, binary and mode == 0,
            stats=(mean[:c].detach(), var[:c].detach(), count, global_batchnorm.active(bn)))
        clip = getattr(q, "clip", 1.0)

        def selector(rank: Tensor) -> Tensor:
            return edge_diff_quant.EdgeDiffSelect.apply(x, idx, gamma, beta, w_a, rank, vals,
                                                        mode, clip)
        s = torch.rsqrt(var[c:] + bn.eps) * bn.weight[c:]
        node = q(torch.addcmul(bn.bias[c:] - mean[c:] * s, x, s))
        return NeighborValues(self._half_products(node, w[:, c:]),
                              rel_extremes=vals["extremes"], k=idx.shape[-1], selector=selector)

    def _needs_grad(self, x: Tensor, w: Tensor) -> bool:
        return torch.is_grad_enabled() and (
            x.requires_grad or w.requires_grad
            or any(p.requires_grad for p in self.block.center.parameters()))

    def _fused_eval_values(self, x: Tensor, idx: Tensor, w: Tensor) -> NeighborValues:
        """Eval mode without gradients: BatchNorm with its running statistics in PyTorch's
        arithmetic (:func:`~bingnn.nn.batchnorm_stats.eval_affine`, one fused multiply-add), so
        the signs equal the plain path's bit for bit."""
        bn, q = self.block.center, self.block.input_quantizer
        c = self.in_channels
        binary = self.block.linear.binary_weights
        mode = 0 if isinstance(q, SteSign) else 1
        with torch.no_grad():
            scale, shift = eval_affine(bn)
            ext = edge_diff_quant.eval_edge_extremes(x, idx, scale[:c], shift[:c], w[:, :c],
                                                     mode, binary and mode == 0)
            y_node = self._half_products(q(self._eval_bn(x, slice(c, 2 * c))), w[:, c:])
        return NeighborValues(y_node, rel_extremes=ext, k=idx.shape[-1],
                              selector=lambda rank: edge_diff_quant.at_extremes(ext, rank))

    def _linear_values(self, x: Tensor, idx: Tensor, w: Tensor) -> NeighborValues:
        """No quantizer: the map is linear in the (batch-normalised) edge feature, computed per
        node with the BatchNorm folded into the weights."""
        bn = self.block.center
        scale = shift = None
        if isinstance(bn, ChannelBatchNorm):
            if uses_batch_stats(bn):
                c = self.in_channels
                rel = gather_neighbors(x, idx) - x.unsqueeze(2)
                count = rel.shape[0] * rel.shape[1] * rel.shape[2]
                check_count(count, 2 * c)
                mean_r, var_r = edge_moments(rel)
                var_n, mean_n = torch.var_mean(x.reshape(-1, c), dim=0, correction=0)
                mean, var, count = batch_moments(bn, torch.cat([mean_r, mean_n]),
                                                 torch.cat([var_r, var_n]), count)
                update_running_stats(bn, mean, var, count)
                scale, shift = bn_affine(bn, mean, var)
            else:
                scale, shift = eval_affine(bn)
        u, v = linear_parts(x, w, scale, shift)
        return NeighborValues(v, u=u, idx=idx)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.k}, knn={self.knn_metric}"
