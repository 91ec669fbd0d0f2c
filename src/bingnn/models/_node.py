"""Shared skeleton of the node-classification models (GraphSAGE and GCN families).

Node features may be a dense ``(N, F)`` tensor or a sparse one (``torch.sparse_csr`` or
``sparse_coo``): bag-of-words graphs such as Facebook Page-Page (22,470 x 4,714, 0.3% ones)
train about 70x faster when the first layer multiplies the sparse matrix instead of a dense
copy. Only the first layer ever sees the raw features; it is affine in them (no centering, no
activation quantizer), so it runs as a sparse-dense product.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bingnn.nn.activations import ChannelPReLU

#: quantization stage -> (activation quantizer, weight quantizer), as in the cascade of
#: Bahri et al.: 0 float, 1 float weights + tanh, 2 binary activations, 3 fully binary.
NODE_STAGES: dict[int, tuple[str, str]] = {
    0: ("identity", "identity"),
    1: ("tanh", "identity"),
    2: ("ste_sign", "identity"),
    3: ("ste_sign", "ste_sign"),
}


def check_stage(stage: int) -> tuple[str, str]:
    if stage not in NODE_STAGES:
        raise ValueError(f"stage must be 0 (float), 1, 2 or 3 (fully binary), got {stage!r}")
    return NODE_STAGES[stage]


def check_arch(in_channels: int, hidden_channels: int, num_layers: int, out_channels: int,
               dropout: float, input_dropout: float) -> None:
    for name, v in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                    ("num_layers", num_layers), ("out_channels", out_channels)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {p}")


def sparse_csr(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    """``torch.sparse_csr_tensor`` without invariant checks (callers build valid CSR) and
    without torch's "CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def to_sparse_csr(x: Tensor) -> Tensor:
    """``x.to_sparse_csr()`` without torch's beta warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return x.to_sparse_csr()


def is_sparse(x: Tensor) -> bool:
    """True for sparse COO/CSR feature matrices."""
    return x.layout in (torch.sparse_coo, torch.sparse_csr)


def sparse_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on the stored entries of a sparse matrix: what ``F.dropout`` does to a dense
    copy (zeros stay zero; kept entries are scaled by ``1 / (1 - p)``)."""
    if not training or p == 0.0:
        return x
    if x.layout == torch.sparse_csr:
        return sparse_csr(x.crow_indices(), x.col_indices(), F.dropout(x.values(), p, True),
                          x.shape)
    x = x.coalesce()
    return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, True), x.shape,
                                   is_coalesced=True, check_invariants=False)


def batches(n: int, batch_size: int) -> Iterator[Tensor]:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, n, batch_size):
        yield torch.arange(start, min(start + batch_size, n))


class NodeModel(nn.Module):
    """``num_layers`` convolutions; between two: PReLU (per channel, init 0.25) and dropout.

    Subclasses build ``self.convs`` and implement :meth:`_layerwise_layer`.
    """

    convs: nn.ModuleList
    acts: nn.ModuleList

    def _build_acts(self, hidden_channels: int, num_layers: int) -> None:
        self.acts = nn.ModuleList(ChannelPReLU(hidden_channels) for _ in range(num_layers - 1))

    def reset_parameters(self) -> None:
        for m in [*self.convs, *self.acts]:
            m.reset_parameters()

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    def _between(self, i: int, x: Tensor) -> Tensor:
        if i < self.num_layers - 1:
            x = self.acts[i](x)
            x = F.dropout(x, p=self.dropout, training=self.training)
        return x

    def forward(self, x: Tensor, edge_index: Tensor, return_hidden: bool = False):
        """Logits ``(N, out_channels)`` for all nodes of the (sub)graph; with
        ``return_hidden=True`` also the list of hidden features (one per inner layer, after
        the activation), used by LSP distillation. ``x`` may be sparse (module docstring)."""
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(
                f"expected node features of shape (N, {self.in_channels}), got {tuple(x.shape)}"
            )
        hidden = []
        if is_sparse(x):
            x = sparse_dropout(x, self.input_dropout, self.training)
        else:
            x = F.dropout(x, p=self.input_dropout, training=self.training)
        for i, conv in enumerate(self.convs):
            x = self._first_layer(x, edge_index) if i == 0 else conv(x, edge_index)
            if i < self.num_layers - 1:
                x = self.acts[i](x)
                hidden.append(x)
                x = F.dropout(x, p=self.dropout, training=self.training)
        return (x, hidden) if return_hidden else x

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, batch_size: int = 4096) -> Tensor:
        """Layer-wise full-neighbourhood inference (eval mode): each layer is computed for all
        nodes, ``batch_size`` target nodes at a time, before the next layer starts, so memory
        is ``O(N * C + batch edges * C)`` instead of a ``num_layers``-hop neighbourhood per
        node. Gives the same logits as ``forward`` in eval mode. ``x`` may be sparse."""
        from bingnn.graphs.sampler import CSRGraph  # graphs builds on models, not vice versa

        if self.training:
            raise RuntimeError("call model.eval() before layer-wise inference")
        n = x.size(0)
        csr = CSRGraph.from_edge_index(edge_index, n)
        state = self._layerwise_prepare(csr)
        for i in range(self.num_layers):
            outs = []
            for b in batches(n, batch_size):
                outs.append(self._layerwise_layer(i, x, b, csr, state))
            x = (torch.cat(outs, dim=0) if outs
                 else torch.zeros(0, self._out_width(i), dtype=x.dtype, device=x.device))
            if i < self.num_layers - 1:
                x = self.acts[i](x)
        return x

    def _first_layer(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """The first convolution on the (possibly sparse) input features."""
        return self.convs[0](x, edge_index)

    def _out_width(self, i: int) -> int:
        return self.out_channels if i == self.num_layers - 1 else self.hidden_channels

    def _layerwise_prepare(self, csr) -> dict:
        return {}

    def _layerwise_layer(self, i: int, x: Tensor, targets: Tensor, csr, state: dict) -> Tensor:
        raise NotImplementedError
