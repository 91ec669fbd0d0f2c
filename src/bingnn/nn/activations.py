"""Channel-last activations used by binary blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelPReLU(nn.Module):
    r"""PReLU with one slope per channel on the last dimension (``nn.PReLU`` wants dim 1).

    :math:`y = x` if :math:`x \ge 0` else :math:`a_c x`, slopes initialised to ``init`` (0.25).
    """

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        self.channels = channels
        self.init = init
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init)

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, x * self.weight)

    def extra_repr(self) -> str:
        return f"{self.channels}, init={self.init}"
