"""Learned output rescaling of binary layers (XNOR-Net++, Bulat & Tzimiropoulos 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LearnedRescale(nn.Module):
    r"""Multiply channel-last features by learned factors, initialised to 1.

    .. math::
        y_{n,j,c} = x_{n,j,c} \, \alpha_c \, \beta_n \, \gamma_j

    :math:`\alpha` (one per output channel) is always present; :math:`\beta` (one per point) and
    :math:`\gamma` (one per neighbour) are optional and fix the point count and ``k`` the layer
    accepts. Their outer product is the full factor, as in the paper.

    Args:
        channels: number of channels :math:`C`.
        num_points: enable the per-point factor for inputs with this many points.
        num_neighbors: enable the per-neighbour factor for inputs with this many neighbours.

    Shapes:
        ``(*, C)``, ``(B, N, C)`` or ``(B, N, k, C)`` -> same shape.
    """

    def __init__(
        self, channels: int, num_points: int | None = None, num_neighbors: int | None = None
    ) -> None:
        super().__init__()
        self.channels = channels
        self.num_points = num_points
        self.num_neighbors = num_neighbors
        self.channel_scale = nn.Parameter(torch.ones(channels))
        self.point_scale = nn.Parameter(torch.ones(num_points)) if num_points else None
        self.neighbor_scale = nn.Parameter(torch.ones(num_neighbors)) if num_neighbors else None

    def reset_parameters(self) -> None:
        for p in (self.channel_scale, self.point_scale, self.neighbor_scale):
            if p is not None:
                nn.init.ones_(p)

    def forward(self, x: Tensor) -> Tensor:
        out = x * self.channel_scale
        if self.neighbor_scale is not None:
            if x.dim() != 4 or x.shape[2] != self.num_neighbors:
                raise ValueError(
                    f"per-neighbour rescaling expects (B, N, {self.num_neighbors}, C), "
                    f"got {tuple(x.shape)}"
                )
            out = out * self.neighbor_scale.view(1, 1, -1, 1)
        if self.point_scale is not None:
            if x.dim() < 3 or x.shape[1] != self.num_points:
                raise ValueError(
                    f"per-point rescaling expects {self.num_points} points on dim 1, "
                    f"got {tuple(x.shape)}"
                )
            out = out * self.point_scale.view(1, -1, *([1] * (x.dim() - 2)))
        return out

    def extra_repr(self) -> str:
        return f"{self.channels}, points={self.num_points}, neighbors={self.num_neighbors}"
