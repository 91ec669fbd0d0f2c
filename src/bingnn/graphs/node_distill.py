"""Three-stage cascaded distillation for node classifiers (Bahri et al. 2021, GraphSAGE part).

Stage 0 trains the float teacher (or takes a trained one). Each later stage trains the next,
more binary student, initialised from its teacher's weights and supervised by its logits
(KD, :math:`T = 2`, :math:`a = 0.1`) and optionally by LSP on the graph's edges:

====== =================================== =========================
stage  student                             teacher
====== =================================== =========================
0      float model (trained from labels)   --
1      float weights, ``tanh`` activations  stage 0
2      binary activations, float weights   stage 1
3      binary activations and weights      stage 2
====== =================================== =========================

All four stages share one architecture (the models' ``stage`` argument only swaps quantizers),
so ``student.load_state_dict(teacher.state_dict())`` is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Data

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.graphs.node_trainer import FitResult, TrainConfig, fit

__all__ = ["CascadeResult", "default_stage_configs", "match_binary_scale", "run_cascade"]


def default_stage_configs(base: TrainConfig, lsp_weight: float = 0.0) -> dict[int, TrainConfig]:
    """Per-stage configurations derived from ``base`` (the from-scratch recipe): stage 2 runs
    at a quarter of the learning rate (its start is already good), stage 3 without weight
    decay (decay pulls latent binary weights to 0, where their sign flips), as in the paper's
    DGCNN cascade. Stages 1-3 distil with KD (``base.kd_alpha``, ``base.kd_temperature``) and
    LSP weight ``lsp_weight``."""
    s0 = replace(base, lsp_weight=0.0)
    s1 = replace(base, lsp_weight=lsp_weight)
    s2 = replace(base, lr=base.lr / 4, lsp_weight=lsp_weight)
    s3 = replace(base, weight_decay=0.0, lsp_weight=lsp_weight)
    return {0: s0, 1: s1, 2: s2, 3: s3}


@dataclass
class CascadeResult:
    """One :class:`FitResult` per trained stage, and the final (stage-3) model."""

    stages: dict[int, FitResult]
    model: nn.Module

    def table(self) -> list[dict[str, Any]]:
        return [{"stage": s, **r.summary()} for s, r in sorted(self.stages.items())]


def run_cascade(
    make_model: Callable[[int], nn.Module],
    data: Data,
    configs: dict[int, TrainConfig],
    teacher: nn.Module | None = None,
    evaluator: Any = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    last_stage: int = 3,
    device: str | torch.device = "cpu",
) -> CascadeResult:
    """Run the cascade up to ``last_stage``.

    Args:
        make_model: ``stage -> model`` (e.g. ``lambda s: BinSAGE(..., stage=s)``); every stage
            must have the same parameter layout.
        data: the graph (see :func:`bingnn.graphs.node_trainer.fit`).
        configs: a :class:`TrainConfig` per stage (:func:`default_stage_configs`).
        teacher: a trained float model: skips stage 0.
        out_dir: per-stage folders ``stage<s>/`` with metrics, checkpoints and the best
            weights (``best.pt``); with ``resume=True`` finished stages are loaded, not re-run.
    """
    if last_stage not in (1, 2, 3):
        raise ValueError(f"last_stage must be 1, 2 or 3, got {last_stage}")
    need = range(0 if teacher is None else 1, last_stage + 1)
    missing = [s for s in need if s not in configs]
    if missing:
        raise ValueError(f"no training configuration for stage(s) {missing}")
    results: dict[int, FitResult] = {}
    current = teacher
    for stage in need:
        student = make_model(stage)
        if current is not None:
            try:
                student.load_state_dict(current.state_dict())
            except RuntimeError as e:
                raise ValueError(
                    f"stage-{stage} student does not share its teacher's layout: {e}"
                ) from e
            match_binary_scale(student, current)
        sdir = Path(out_dir) / f"stage{stage}" if out_dir is not None else None
        best_path = sdir / "best.pt" if sdir is not None else None
        if resume and best_path is not None and best_path.exists():
            from bingnn.train.checkpoint import load_checkpoint

            st = load_checkpoint(best_path, map_location=device)
            student.load_state_dict(st["model"])
            results[stage] = FitResult(**st["result"], state_dict=st["model"])
        else:
            res = fit(student, data, configs[stage], teacher=current, evaluator=evaluator,
                      out_dir=sdir, resume=resume, progress=progress, device=device)
            student.load_state_dict(res.state_dict)
            results[stage] = res
            if best_path is not None:
                from bingnn.train.checkpoint import save_checkpoint

                save_checkpoint(best_path, {
                    "model": res.state_dict, "model_config": getattr(student, "config", None),
                    "result": {"best_epoch": res.best_epoch, "train": res.train, "val": res.val,
                               "test": res.test, "history": res.history},
                })
        current = student
    assert current is not None
    return CascadeResult(results, current)
