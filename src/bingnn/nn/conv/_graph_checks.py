"""Input checks shared by the graph convolutions (clear errors instead of index faults)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_features(x: Tensor, name: str = "x", channels: int | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (num_nodes, channels), got {tuple(x.shape)}")
    if channels is not None and x.size(1) != channels:
        raise ValueError(f"{name} has {x.size(1)} channels, the layer expects {channels}")
    # A sum is non-finite iff some entry is NaN/inf or the sum overflows: one cheap reduction
    # in the common case, the exact element-wise test only to confirm.
    if (
        x.is_floating_point()
        and x.numel()
        and not bool(torch.isfinite(x.sum()))
        and not bool(torch.isfinite(x).all())
    ):
        raise ValueError(f"{name} contains NaN or inf; clean or impute the node features first")


def check_edge_index(edge_index: Tensor, num_src: int, num_dst: int) -> None:
    """Validate a ``(2, E)`` integer edge index against ``num_src`` sources, ``num_dst`` targets."""
    if edge_index.is_sparse or edge_index.layout != torch.strided:
        if edge_index.size(0) != num_dst or edge_index.size(1) != num_src:
            raise ValueError(
                f"sparse adjacency has shape {tuple(edge_index.shape)}, expected "
                f"({num_dst}, {num_src}) = (targets, sources)"
            )
        return
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edge_index must hold int64 node indices, got {edge_index.dtype}")
    if edge_index.numel() == 0:
        return
    if int(edge_index.min()) < 0:
        raise ValueError("edge_index contains negative node indices")
    if int(edge_index[0].max()) >= num_src or int(edge_index[1].max()) >= num_dst:
        raise ValueError(
            f"edge_index refers to node {int(edge_index.max())} but the graph has "
            f"{num_src} source / {num_dst} target nodes; drop or remap the out-of-range edges"
        )
