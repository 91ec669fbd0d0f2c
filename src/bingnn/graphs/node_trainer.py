"""Training loops for node property prediction: full batch, or mini-batch with neighbour
sampling; evaluation full-graph or layer-wise; optional distillation from a teacher.

One entry point, :func:`fit`. Model selection follows OGB's protocol: the reported test score
is the one at the epoch of best validation score. With a teacher the loss is

.. math::
    \\mathcal{L} = (1 - a)\\,\\mathrm{CE}(s, y) + a\\,\\mathrm{KD}_T(s, t)
        + \\lambda\\,\\overline{\\mathrm{LSP}}(h^S, h^T; \\mathcal{E})

(logit KD of :func:`bingnn.distill.kd.kd_loss`, LSP of
:func:`bingnn.distill.lsp.lsp_loss_edges` on the graph's edges, averaged over hidden layers).

Cross-entropy only sees labelled training nodes. KD needs no labels, so with
``kd_nodes="all"`` (the default) it is taken over every node of the graph, the unlabelled ones
included: on Planetoid that is 2,708 soft targets instead of 140 labels, which is what lets a
fully binary student keep its float teacher's accuracy (see ``docs/results.md``). No label of
a validation or test node is ever read. ``kd_nodes="train"`` restricts KD to the training
nodes, as in the paper's recipe.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from bingnn.distill.kd import kd_loss, kd_loss_multilabel

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "predict", "set_seed", "split_index"]


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`.

    ``mode``: ``"full"`` (whole graph each step) or ``"minibatch"`` (neighbour sampling with
    ``fanouts``, ``batch_size`` seeds). ``eval_mode``: ``"full"`` forward or ``"layerwise"``
    inference (``eval_batch_size`` targets per step). ``scheduler``: ``"none"``, ``"plateau"``
    (x0.5 after ``patience`` epochs without validation gain) or ``"step"`` (x0.5 at 1/2 and
    3/4 of the epochs). ``metric``: ``"acc"``, ``"rocauc"`` or ``"ogb"`` (pass an OGB
    ``Evaluator`` to :func:`fit`). With a teacher: ``kd_alpha`` weighs KD against
    cross-entropy, ``kd_temperature`` softens both, ``kd_nodes`` (``"all"`` or ``"train"``)
    picks the nodes KD is taken over (module docstring); ``lsp_*`` configure LSP.
    """

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    mode: str = "full"
    fanouts: list[int] = field(default_factory=lambda: [15, 10, 5])
    batch_size: int = 1024
    eval_mode: str = "full"
    eval_batch_size: int = 4096
    eval_every: int = 1
    scheduler: str = "none"
    patience: int = 10
    metric: str = "acc"
    multilabel: bool = False
    label_smoothing: float = 0.0
    kd_alpha: float = 0.9
    kd_temperature: float = 2.0
    kd_nodes: str = "all"
    lsp_weight: float = 0.0
    lsp_kernel_s: str = "rbf_l2"
    lsp_kernel_t: str = "rbf_l2"
    seed: int = 0
    sampler_backend: str = "auto"

    def validate(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.mode not in ("full", "minibatch"):
            raise ValueError(f"mode must be 'full' or 'minibatch', got {self.mode!r}")
        if self.eval_mode not in ("full", "layerwise"):
            raise ValueError(f"eval_mode must be 'full' or 'layerwise', got {self.eval_mode!r}")
        if self.scheduler not in ("none", "plateau", "step"):
            raise ValueError(f"scheduler must be none|plateau|step, got {self.scheduler!r}")
        if self.metric not in ("acc", "rocauc", "ogb"):
            raise ValueError(f"metric must be acc|rocauc|ogb, got {self.metric!r}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.kd_nodes not in ("train", "all"):
            raise ValueError(f"kd_nodes must be 'train' or 'all', got {self.kd_nodes!r}")
        if self.eval_every <= 0:
            raise ValueError("eval_every must be positive")


@dataclass
class FitResult:
    """Scores at the best validation epoch, the history, and the best weights."""

    best_epoch: int
    train: float
    val: float
    test: float
    history: list[dict[str, float]]
    state_dict: dict[str, Tensor]

    def summary(self) -> dict[str, float]:
        return {"best_epoch": self.best_epoch, "train": self.train, "val": self.val,
                "test": self.test}


def split_index(data: Data, split: str) -> Tensor:
    """Node ids of ``split`` (``train``/``val``/``test``) from ``<split>_mask`` or
    ``<split>_idx`` attributes (OGB's ``valid`` is accepted for ``val``)."""
    for key in (f"{split}_mask", f"{split}_idx"):
        v = getattr(data, key, None)
        if v is not None:
            return v.nonzero().view(-1) if v.dtype == torch.bool else v.long().view(-1)
    raise ValueError(f"the graph has no {split}_mask or {split}_idx")


def labelled_mask(train_idx: Tensor, num_nodes: int) -> Tensor:
    """Boolean mask of the training nodes (on ``train_idx``'s device)."""
    m = torch.zeros(num_nodes, dtype=torch.bool, device=train_idx.device)
    m[train_idx] = True
    return m


def _check_data(data: Data) -> None:
    if getattr(data, "x", None) is None or getattr(data, "y", None) is None:
        raise ValueError("the graph needs node features x and labels y")
    if data.num_nodes == 0:
        raise ValueError("the graph has no nodes")
    x = data.x
    if x.layout == torch.sparse_coo:
        x = x.coalesce().values()
    elif x.layout == torch.sparse_csr:  # sparse bag-of-words features: check what is stored
        x = x.values()
    if not torch.isfinite(x).all():
        raise ValueError("node features contain NaN or inf")


def _loss(logits: Tensor, y: Tensor, cfg: TrainConfig) -> Tensor:
    if cfg.multilabel:
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y.view(-1).long(), label_smoothing=cfg.label_smoothing)


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (the Mann-Whitney convention)."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(sv[1:] != sv[:-1]) + 1]
    ends = np.r_[starts[1:], sv.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(v.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _rocauc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over tasks (with both classes present) of the ROC-AUC, via the rank statistic."""
    aucs = []
    for t in range(y.shape[1]):
        pos = y[:, t] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        r = _average_ranks(scores[:, t])
        aucs.append((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    if not aucs:
        raise ValueError("no task has both positive and negative labels; ROC-AUC undefined")
    return float(np.mean(aucs))


def evaluate(logits: Tensor, y: Tensor, idx: Tensor, metric: str = "acc",
             evaluator: Any = None) -> float:
    """Score ``logits[idx]`` against ``y[idx]``: accuracy, mean ROC-AUC, or an OGB
    ``Evaluator`` (its ``eval_metric`` is read from the result)."""
    if idx.numel() == 0:
        return float("nan")
    out, yt = logits[idx], y[idx]
    if metric == "ogb":
        if evaluator is None:
            raise ValueError("metric 'ogb' needs an OGB Evaluator")
        if evaluator.eval_metric == "acc":
            pred = out.argmax(dim=-1, keepdim=True)
            res = evaluator.eval({"y_true": yt.view(-1, 1), "y_pred": pred})
        else:
            res = evaluator.eval({"y_true": yt, "y_pred": out})
        return float(res[evaluator.eval_metric])
    if metric == "rocauc":
        return _rocauc(out.detach().cpu().numpy(), yt.cpu().numpy())
    return float((out.argmax(dim=-1) == yt.view(-1)).float().mean())


@torch.no_grad()
def predict(model: nn.Module, data: Data, eval_mode: str = "full",
            eval_batch_size: int = 4096) -> Tensor:
    """Logits of all nodes in eval mode (full forward or layer-wise inference)."""
    was = model.training
    model.eval()
    try:
        if eval_mode == "layerwise":
            return model.inference(data.x, data.edge_index, batch_size=eval_batch_size)
        return model(data.x, data.edge_index)
    finally:
        model.train(was)


def evaluate_splits(model: nn.Module, data: Data, splits: dict[str, Tensor], cfg: TrainConfig,
                    evaluator: Any = None) -> dict[str, float]:
    """Score ``model`` on each named node split (one eval-mode forward for all of them)."""
    logits = predict(model, data, cfg.eval_mode, cfg.eval_batch_size)
    return {name: evaluate(logits, data.y, idx, cfg.metric, evaluator)
            for name, idx in splits.items()}


def _lsp(s_hidden: list[Tensor], t_hidden: list[Tensor], edge_index: Tensor,
         cfg: TrainConfig) -> Tensor:
    from bingnn.distill.lsp import lsp_loss_edges

    if len(s_hidden) != len(t_hidden):
        raise ValueError("LSP needs teacher and student of the same depth")
    centre_first = edge_index.flip(0)  # PyG: row 1 is the centre (target); LSP wants row 0
    terms = [lsp_loss_edges(s, t, centre_first, cfg.lsp_kernel_s, cfg.lsp_kernel_t)
             for s, t in zip(s_hidden, t_hidden, strict=True)]
    return torch.stack(terms).mean()


class Objective:
    """Loss of one step on a (sub)graph: cross-entropy on the nodes ``rows`` (labelled), KD on
    ``kd_rows`` (default: ``rows``); used by both the single-process loop and DDP.
    ``reduction_size`` / ``kd_reduction_size`` turn each mean into a sum over the local rows
    divided by a global count (DDP shards)."""

    def __init__(self, cfg: TrainConfig, teacher: nn.Module | None = None) -> None:
        self.cfg, self.teacher = cfg, teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

    @property
    def kd_on_all_nodes(self) -> bool:
        return self.teacher is not None and self.cfg.kd_nodes == "all"

    @property
    def needs_hidden(self) -> bool:
        return self.teacher is not None and self.cfg.lsp_weight > 0

    @torch.no_grad()
    def teacher_outputs(self, x: Tensor, edge_index: Tensor):
        """The teacher's logits (and hidden features when LSP is on) on a graph. The teacher
        is frozen in eval mode, so a full-batch loop computes them once for all epochs."""
        assert self.teacher is not None
        return self.teacher(x, edge_index, return_hidden=self.needs_hidden)

    def __call__(self, model: nn.Module, x: Tensor, edge_index: Tensor, y: Tensor,
                 rows: Tensor, reduction_size: int | None = None,
                 kd_rows: Tensor | None = None, kd_reduction_size: int | None = None,
                 teacher_out: Any = None) -> Tensor:
        cfg = self.cfg
        need_hidden = self.needs_hidden
        out = model(x, edge_index, return_hidden=need_hidden)
        logits, hidden = out if need_hidden else (out, None)
        ce = _mean_over(lambda r: _loss(logits[r], y[r], cfg), rows, reduction_size, logits)
        if self.teacher is None:
            return ce
        if kd_rows is None:
            kd_rows, kd_reduction_size = rows, reduction_size
        t_out = self.teacher_outputs(x, edge_index) if teacher_out is None else teacher_out
        t_logits, t_hidden = t_out if need_hidden else (t_out, None)
        kd_fn = kd_loss_multilabel if cfg.multilabel else kd_loss
        kd = _mean_over(lambda r: kd_fn(logits[r], t_logits[r], cfg.kd_temperature),
                        kd_rows, kd_reduction_size, logits)
        loss = (1 - cfg.kd_alpha) * ce + cfg.kd_alpha * kd
        if need_hidden:
            loss = loss + cfg.lsp_weight * _lsp(hidden, t_hidden, edge_index, cfg)
        return loss


def _mean_over(term: Callable[[Tensor], Tensor], rows: Tensor, reduction_size: int | None,
               like: Tensor) -> Tensor:
    """``term(rows)`` (a mean over ``rows``), rescaled to ``sum / reduction_size``; zero (with
    a gradient path) when ``rows`` is empty, e.g. a mini-batch without labelled nodes."""
    if rows.numel() == 0:
        return like.sum() * 0
    v = term(rows)
    return v * rows.numel() / reduction_size if reduction_size is not None else v


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=cfg.patience
        )
    if cfg.scheduler == "step":
        ms = sorted({max(1, cfg.epochs // 2), max(1, 3 * cfg.epochs // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=0.5)
    return None


def fit(
    model: nn.Module,
    data: Data,
    cfg: TrainConfig,
    teacher: nn.Module | None = None,
    evaluator: Any = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    device: str | torch.device = "cpu",
) -> FitResult:
    """Train ``model`` on ``data`` (``x``, ``y``, ``edge_index``, train/val/test masks or
    index tensors); return the scores at the best validation epoch and the best weights.

    With ``out_dir``: ``metrics.csv`` (one row per evaluated epoch) and ``checkpoint.pt``
    (written atomically after each evaluated epoch) go there; ``resume=True`` continues from
    the checkpoint. ``teacher`` switches on distillation (see module docstring).
    """
    cfg.validate()
    _check_data(data)
    train_idx, val_idx, test_idx = (split_index(data, s) for s in ("train", "val", "test"))
    if train_idx.numel() == 0:
        raise ValueError("the training split is empty")
    set_seed(cfg.seed)
    device = torch.device(device)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    cpu_data = data
    # Data.to() moves in place: move a shallow copy so the caller's graph (and the sampler's
    # CPU copy) stay where they are.
    data = copy.copy(data).to(device)
    train_idx, val_idx, test_idx = (t.to(device) for t in (train_idx, val_idx, test_idx))
    obj = Objective(cfg, teacher)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg)
    all_idx = torch.arange(data.num_nodes, device=device)
    loader = is_train = None
    if cfg.mode == "minibatch":
        from bingnn.graphs.sampler import make_neighbor_loader

        # KD on all nodes: seeds are drawn from the whole graph, cross-entropy keeps to the
        # labelled training seeds of each batch.
        seeds = None if obj.kd_on_all_nodes else train_idx.cpu()
        is_train = labelled_mask(train_idx, data.num_nodes)
        loader = make_neighbor_loader(cpu_data, cfg.fanouts, input_nodes=seeds,
                                      batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                                      backend=cfg.sampler_backend)

    log = ckpt_path = None
    start_epoch, history = 1, []
    best = {"epoch": 0, "train": float("nan"), "val": -math.inf, "test": float("nan")}
    best_state = copy.deepcopy(model.state_dict())
    if out_dir is not None:
        from bingnn.train.checkpoint import load_checkpoint, set_rng_state
        from bingnn.train.metrics_log import MetricsLog

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ckpt_path = out / "checkpoint.pt"
        log = MetricsLog(out / "metrics.csv", ["epoch", "loss", "train", "val", "test", "lr"])
        if resume and ckpt_path.exists():
            st = load_checkpoint(ckpt_path, map_location=device)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            if sched is not None and st.get("scheduler") is not None:
                sched.load_state_dict(st["scheduler"])
            best, best_state, history = st["best"], st["best_state"], st["history"]
            start_epoch = int(st["epoch"]) + 1
            set_rng_state(st["rng"])
            if loader is not None and st.get("loader_rng") is not None:
                loader.generator.set_state(st["loader_rng"])
            log.truncate(start_epoch - 1)
        elif not resume:
            log.truncate(0)

    t_out = None
    if teacher is not None and loader is None:
        t_out = obj.teacher_outputs(data.x, data.edge_index)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start_epoch - 1, desc="train", unit="epoch")
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        total, steps = 0.0, 0
        if loader is None:
            opt.zero_grad()
            loss = obj(model, data.x, data.edge_index, data.y, train_idx,
                       kd_rows=all_idx if obj.kd_on_all_nodes else None, teacher_out=t_out)
            loss.backward()
            opt.step()
            total, steps = float(loss.detach()), 1
        else:
            for batch in loader:
                batch = batch.to(device)
                opt.zero_grad()
                seed_rows = torch.arange(batch.batch_size, device=device)
                rows = is_train[batch.n_id[: batch.batch_size]].nonzero().view(-1)
                loss = obj(model, batch.x, batch.edge_index, batch.y, rows, kd_rows=seed_rows)
                loss.backward()
                opt.step()
                total, steps = total + float(loss.detach()), steps + 1
        row = {"epoch": epoch, "loss": total / max(steps, 1), "lr": opt.param_groups[0]["lr"]}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            row.update(evaluate_splits(
                model, data, {"train": train_idx, "val": val_idx, "test": test_idx}, cfg,
                evaluator))
            score = row["val"] if val_idx.numel() else row["train"]
            if score > best["val"] or best["epoch"] == 0:
                best = {"epoch": epoch, "train": row["train"], "val": score, "test": row["test"]}
                best_state = copy.deepcopy(model.state_dict())
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(score)
            history.append(row)
            if log is not None:
                log.append(row)
            if ckpt_path is not None:
                from bingnn.train.checkpoint import rng_state, save_checkpoint

                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "epoch": epoch, "best": best, "best_state": best_state,
                    "history": history, "rng": rng_state(), "config": asdict(cfg),
                    "model_config": getattr(model, "config", None),
                    "loader_rng": loader.generator.get_state()
                    if loader is not None and getattr(loader, "generator", None) is not None
                    else None,
                })
            if on_epoch is not None:
                on_epoch(row)
        if isinstance(sched, torch.optim.lr_scheduler.MultiStepLR):
            sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{best['val']:.4f}")
    if bar is not None:
        bar.close()
    return FitResult(int(best["epoch"]), float(best["train"]), float(best["val"]),
                     float(best["test"]), history, best_state)
