"""Centering before a sign: BatchNorm, or the paper's "balance" functions (mean, median).

A sign only carries information if its input is spread around zero; these modules move it there.
All work channel-last.
"""

from __future__ import annotations

from torch import Tensor, nn


class ChannelBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) dimension, statistics over all leading dimensions.

    Equivalent to ``BatchNorm1d`` on ``(B, C, N)`` and ``BatchNorm2d`` on ``(B, C, N, k)`` of the
    channels-first reference code.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class MeanCenter(nn.Module):
    """Subtract the mean over the channels of each point (the paper's mean balance)."""

    def forward(self, x: Tensor) -> Tensor:
        return x - x.mean(dim=-1, keepdim=True)

    def reset_parameters(self) -> None:
        pass


class MedianCenter(nn.Module):
    """Subtract the median over the channels of each point, so about half the bits are +1.

    For an even channel count the lower median is used (``torch.median``'s convention).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x - x.median(dim=-1, keepdim=True).values

    def reset_parameters(self) -> None:
        pass


class NoCenter(nn.Identity):
    def reset_parameters(self) -> None:
        pass


CENTERINGS = ("batchnorm", "mean", "median", "none")


def get_centering(name: str | None, channels: int) -> nn.Module:
    """Build a centering module: ``"batchnorm"`` (default of binary blocks), ``"mean"``,
    ``"median"`` or ``"none"``."""
    key = "none" if name is None else str(name).lower()
    if key in ("batchnorm", "bn"):
        return ChannelBatchNorm(channels)
    if key == "mean":
        return MeanCenter()
    if key == "median":
        return MedianCenter()
    if key == "none":
        return NoCenter()
    raise ValueError(f"unknown centering {name!r}; choose one of {', '.join(CENTERINGS)}")
