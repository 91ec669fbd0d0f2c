"""Optimizers and learning-rate schedules from plain config dictionaries.

Schedules (``schedule`` dicts, stepped once per epoch):

* ``{"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5}``: multiply the learning rate
  by ``gamma`` at each milestone, given as a fraction of the epochs (the paper's stages 1-2:
  x0.5 at 1/2 and 3/4).
* ``{"type": "step", "step_size": 50, "gamma": 0.5}``: multiply by ``gamma`` every
  ``step_size`` epochs (stage 3: x0.5 every 50 epochs); ``"step_size_frac": f`` gives it as a
  fraction of the epochs instead, for shortened runs.
* ``{"type": "cosine"}``: cosine annealing to 0 over the epochs.
* ``{"type": "constant"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["SCHEDULES", "build_optimizer", "build_scheduler"]

SCHEDULES = ("multistep", "step", "cosine", "constant")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> Optimizer:
    """``"adam"`` (the paper's choice for every stage) or ``"sgd"`` (momentum 0.9)."""
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'")


def build_scheduler(
    optimizer: Optimizer, schedule: Mapping[str, Any] | None, epochs: int
) -> LRScheduler:
    """Per-epoch learning-rate scheduler for a run of ``epochs`` epochs (see module doc)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    s = dict(schedule or {"type": "constant"})
    kind = str(s.pop("type", "constant")).lower()
    gamma = float(s.pop("gamma", 0.5))

    def _done() -> None:
        if s:
            raise ValueError(f"unknown keys {sorted(s)} for schedule type {kind!r}")

    if kind == "multistep":
        fracs = s.pop("milestones", [0.5, 0.75])
        _done()
        if any(not 0 < float(f) <= 1 for f in fracs):
            raise ValueError(f"multistep milestones are fractions in (0, 1], got {fracs}")
        milestones = sorted({max(1, round(float(f) * epochs)) for f in fracs})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=gamma)
    if kind == "step":
        size = s.pop("step_size", None)
        frac = s.pop("step_size_frac", None)
        _done()
        if (size is None) == (frac is None):
            raise ValueError("schedule 'step' needs exactly one of step_size or step_size_frac")
        step = int(size) if size is not None else max(1, round(float(frac) * epochs))
        if step < 1:
            raise ValueError(f"step_size must be >= 1, got {step}")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)
    if kind == "cosine":
        _done()
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if kind == "constant":
        _done()
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _e: 1.0)
    raise ValueError(f"unknown schedule type {kind!r}; choose one of {', '.join(SCHEDULES)}")
