"""Parts shared by the point-cloud classifiers: input checks and global pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bingnn.nn.knn import check_point_sets


def check_points(points: Tensor, k: int, dtype: torch.dtype | None = None) -> Tensor:
    """Validate a ``(B, N, 3)`` batch of point clouds for a model with ``k`` neighbours, once at
    the model's entry (layers re-check only in debug mode, ``bingnn.debug()``), and return it in
    the model's floating-point ``dtype`` (float16/float64 clouds are cast, so a float64 array
    from numpy works with a float32 model)."""
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be shaped (B, N, 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(
            f"points must be floating point, got {points.dtype}; convert them with .float()"
        )
    if dtype is not None and points.dtype != dtype:
        if not torch.isfinite(points).all():
            raise ValueError("points contains NaN or infinite values")
        points = points.to(dtype)
        what = f"points contains values too large for the model's {dtype} (infinite after casting)"
    else:
        what = "points contains NaN or infinite values"
    check_point_sets(points, k, name="points", scan=False)
    if not torch.isfinite(points).all():
        raise ValueError(what)
    return points


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating-point dtype of the model's first parameter (``None`` without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def max_avg_pool(x: Tensor) -> Tensor:
    """Global max and average pooling over points: ``(B, N, C)`` -> ``(B, 2C)``."""
    return torch.cat([x.max(dim=1).values, x.mean(dim=1)], dim=-1)


def _repeat_to(x: Tensor, channels: int) -> Tensor:
    return x.repeat(1, 1, channels // x.shape[-1])


def run_edge_convs(
    convs: nn.ModuleList, points: Tensor, shortcut: bool = False, residual: bool = False
) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Chain the dynamic-graph layers: each builds its k-NN graph on the previous output.

    With ``shortcut`` (layers with ``pre_activation`` / ``quantize``, as
    :class:`~bingnn.nn.conv.XorPointEdgeConv`) every layer after the first quantizes its real
    value plus the real value the layer before it quantized, channels repeated where the width
    grows (Bi-Real Net's shortcuts; :class:`~bingnn.models.BinDGCNN`'s ``shortcut``). With
    ``residual`` (real-valued layer outputs, RF) every layer after the first adds its input to
    its output, channels repeated likewise.

    Returns the concatenated layer outputs ``(B, N, sum C_l)`` and, per layer, the features its
    graph was built on with that graph ``(B, N, k)`` (the LSP loss compares these).
    """
    x, feats, graphs = points, [], []
    stream: Tensor | None = None
    for conv in convs:
        if shortcut:
            h, idx = conv.pre_activation(x)
            if stream is not None:
                h = h + _repeat_to(stream, h.shape[-1])
            stream = h
            out = conv.quantize(h)
        else:
            out, idx = conv(x, return_graph=True)
            if residual and x is not points:
                out = out + _repeat_to(x, out.shape[-1])
        graphs.append((x, idx))
        feats.append(out)
        x = out
    return torch.cat(feats, dim=-1), graphs


def reset_submodules(model: nn.Module) -> None:
    """Re-initialise every submodule that can (``reset_parameters``)."""
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
