"""Carry a real-weight teacher's scale over to a student that binarizes those weights."""

from __future__ import annotations

import torch
from torch import nn

from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.rescale import LearnedRescale


@torch.no_grad()
def match_binary_scale(student: nn.Module, teacher: nn.Module) -> int:
    r"""Fold the XNOR-Net weight scale into the learned rescaling where the student binarizes
    weights that its teacher kept real.

    For every module with a ``linear`` (:class:`~bingnn.nn.BinaryLinear`) followed by a
    ``rescale`` (:class:`~bingnn.nn.LearnedRescale`) — binary blocks, XorEdgeConv —
    :math:`\alpha_c \leftarrow \alpha_c \cdot \tfrac{1}{C_{in}}\sum_k |W_{ck}|`, so that
    :math:`\alpha \odot \operatorname{sign}(W)` starts as the best scaled-binary approximation
    of the teacher's :math:`\alpha \odot W` instead of being about :math:`1/|W|` times larger
    (which blows up real features and any loss on them, such as LSP); a real bias of the map
    (``prelu_shift``) is divided by the same mean, so :math:`\alpha \odot (Wx + b)` keeps its
    shift. Call it after loading the teacher's state dict. Returns the number of layers
    adjusted.
    """
    t_mods = dict(teacher.named_modules())
    n = 0
    for name, mod in student.named_modules():
        lin, rescale = getattr(mod, "linear", None), getattr(mod, "rescale", None)
        if not isinstance(lin, BinaryLinear) or not isinstance(rescale, LearnedRescale):
            continue
        t_lin = getattr(t_mods.get(name), "linear", None)
        if not lin.binary_weights or not isinstance(t_lin, BinaryLinear) or t_lin.binary_weights:
            continue
        w = lin.weight.clamp(-1.0, 1.0)
        m = w.abs().mean(dim=1).clamp(min=1e-8)
        rescale.channel_scale.mul_(m)
        if lin.bias is not None:
            lin.bias.div_(m)
        n += 1
    return n
