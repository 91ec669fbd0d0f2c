"""Optimizers and learning-rate schedules from plain config dictionaries.

Every training run of bingnn (point clouds and graphs) builds its schedule here, so a name
means one thing everywhere. Schedules (``schedule`` dicts) are stepped once per epoch, after
the epoch's validation and *before* its checkpoint is written, so a resumed run continues with
exactly the learning rate a straight run would use (:func:`step_scheduler`):

* ``{"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5}``: multiply the learning rate
  by ``gamma`` at each milestone, given as a fraction of the epochs (the paper's stages 1-2:
  x0.5 at 1/2 and 3/4).
* ``{"type": "step", "step_size": 50, "gamma": 0.5}``: multiply by ``gamma`` every
  ``step_size`` epochs (stage 3: x0.5 every 50 epochs); ``"step_size_frac": f`` gives it as a
  fraction of the epochs instead, for shortened runs.
* ``{"type": "cosine"}``: cosine annealing to 0 over the epochs.
* ``{"type": "plateau", "patience": 10, "gamma": 0.5}``: multiply by ``gamma`` when the
  validation score has not improved for ``patience`` epochs (``ReduceLROnPlateau``, mode max).
* ``{"type": "constant"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["SCHEDULES", "Scheduler", "build_optimizer", "build_scheduler", "step_scheduler"]

SCHEDULES = ("constant", "cosine", "multistep", "step", "plateau")
Scheduler = LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


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
) -> Scheduler:
    """Per-epoch learning-rate scheduler for a run of ``epochs`` epochs (see module doc).

    Raises ``ValueError`` naming the bad key or value (unknown type or key, a milestone
    outside (0, 1], a step size < 1, gamma outside (0, 1], patience < 0)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if schedule is not None and not isinstance(schedule, Mapping):
        raise ValueError(f"a schedule must be a table like {{type = 'cosine'}}, got {schedule!r}")
    s = dict(schedule or {"type": "constant"})
    kind = str(s.pop("type", "constant")).lower()
    gamma = _number(s.pop("gamma", 0.5), "gamma")
    if not 0 < gamma <= 1:
        raise ValueError(f"schedule gamma must be in (0, 1], got {gamma}")

    def _done() -> None:
        if s:
            raise ValueError(f"unknown keys {sorted(s)} for schedule type {kind!r}")

    if kind == "multistep":
        fracs = s.pop("milestones", [0.5, 0.75])
        _done()
        if not isinstance(fracs, (list, tuple)) or not fracs:
            raise ValueError(f"multistep milestones must be a list of fractions, got {fracs!r}")
        if any(not 0 < _number(f, "milestone") <= 1 for f in fracs):
            raise ValueError(f"multistep milestones are fractions in (0, 1], got {fracs}")
        milestones = sorted({max(1, round(float(f) * epochs)) for f in fracs})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=gamma)
    if kind == "step":
        size = s.pop("step_size", None)
        frac = s.pop("step_size_frac", None)
        _done()
        if (size is None) == (frac is None):
            raise ValueError("schedule 'step' needs exactly one of step_size or step_size_frac")
        if size is not None:
            step = _number(size, "step_size")
            if step != int(step):
                raise ValueError(f"step_size must be an integer, got {size!r}")
            step = int(step)
        else:
            f = _number(frac, "step_size_frac")
            if not 0 < f <= 1:
                raise ValueError(f"step_size_frac must be in (0, 1], got {frac!r}")
            step = max(1, round(f * epochs))
        if step < 1:
            raise ValueError(f"step_size must be >= 1, got {step}")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)
    if kind == "cosine":
        _done()
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if kind == "plateau":
        patience = _number(s.pop("patience", 10), "patience")
        _done()
        if patience < 0 or patience != int(patience):
            raise ValueError(f"plateau patience must be an integer >= 0, got {patience}")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=gamma, patience=int(patience)
        )
    if kind == "constant":
        _done()
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant)
    raise ValueError(f"unknown schedule type {kind!r}; choose one of {', '.join(SCHEDULES)}")


def _constant(_epoch: int) -> float:  # module level: a lambda would not survive pickling
    return 1.0


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"schedule {name} must be a number, got {value!r}")
    return float(value)


def step_scheduler(scheduler: Scheduler, val_score: float) -> None:
    """Advance ``scheduler`` by one epoch; a plateau schedule reads the epoch's validation
    score (higher is better), the others ignore it."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_score)
    else:
        scheduler.step()
