"""Recompute BatchNorm running statistics for the current weights.

During training BatchNorm normalises with batch statistics and keeps an exponential moving
average for evaluation. In a binary network a small weight update flips signs and moves the
activation statistics a lot, so the average trails the network it is meant to describe and
test accuracy swings from epoch to epoch (measured on the BF2 student, docs/results.md). One
forward pass over the (un-augmented) training set with a cumulative average fixes the
statistics to the weights actually evaluated and saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Iterable,
                          device: torch.device | str | None = None,
                          forward: Callable[[nn.Module, Any], Any] | None = None) -> int:
    """Reset every BatchNorm layer of ``model`` and re-estimate its running mean and variance
    as the average over the batches of ``loader`` (``(inputs, labels)`` batches or inputs;
    with ``forward``, any batch: ``forward(model, batch)`` runs the model on it).

    Everything but BatchNorm runs in eval mode during the pass, dropout included: the
    statistics are those of the network that is evaluated, and the result is deterministic.
    (torch's ``swa_utils.update_bn`` keeps the whole model in train mode, so dropout would
    shift the statistics of the layers behind it.) The model's mode and the layers' momentum
    are restored. Returns the number of BatchNorm layers updated (0: the data is not read).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    try:
        for batch in loader:
            if forward is not None:
                forward(model, batch)
                continue
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(x.to(device) if device is not None else x)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)
    return len(bns)
