"""Edge features of EdgeConv-style layers: ``[op(x_j, x_i), x_i]``."""

from __future__ import annotations

import torch
from torch import Tensor

from bingnn.nn.knn import gather_neighbors

EDGE_OPS = ("sub", "xor")


def edge_features(x: Tensor, idx: Tensor, op: str = "sub") -> Tensor:
    r"""Build edge features for every (point, neighbour) pair.

    * ``"sub"``: :math:`[x_j - x_i,\ x_i]` (DGCNN).
    * ``"xor"``: :math:`[x_j \oplus x_i,\ x_i]` where, on +-1 values,
      :math:`x_j \oplus x_i = -x_j x_i` (+1 where the bits differ). Defined for any real input
      so that gradients flow in the pseudo-quantized stages.

    Shapes:
        ``x (B, N, C)``, ``idx (B, N, k)`` -> ``(B, N, k, 2C)``.
    """
    nbrs = gather_neighbors(x, idx)
    centre = x.unsqueeze(2).expand_as(nbrs)
    if op == "sub":
        rel = nbrs - centre
    elif op == "xor":
        rel = -nbrs * centre
    else:
        raise ValueError(f"unknown edge op {op!r}; choose one of {', '.join(EDGE_OPS)}")
    return torch.cat([rel, centre], dim=-1)
