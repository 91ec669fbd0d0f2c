"""Node classification on one graph as a :class:`~bingnn.train.task.Task`: full batch or
mini-batches with neighbour sampling, evaluation by a full forward or layer-wise inference.

Labels: cross-entropy reads the labels of training nodes only. With a teacher and
``kd_nodes="all"``, KD is taken over every node of the graph (no label is read: the teacher's
soft targets on unlabelled nodes are extra supervision; see ``docs/results.md``); with
``"train"``, over the training nodes as in the paper. No label of a validation or test node is
read for training; validation scores select the model, and the test split is scored by the
trainer once, for the report.

Batches, for ``W`` processes (one process: ``W = 1``):

- **full batch**: one step per epoch on the whole graph; every process runs the same forward
  pass (same dropout masks: all processes share the seed) and takes the loss over its share
  ``rows[rank::W]`` of the training (and KD) nodes, divided by the global counts.
- **mini-batch**: every process draws the same permutation of the seed nodes (training nodes,
  or every node when KD is taken over all of them) from ``(seed, epoch)``; each global batch
  of ``batch_size`` seeds is split ``rank::W`` and each process samples its own computation
  graph (:func:`bingnn.graphs.sampler.sample_neighbors`, seeded by ``(seed, epoch, rank)``).
  A last global batch with fewer seeds than processes is dropped.

Local structures for LSP: the hidden features after every inner layer, on the (sub)graph's
edges.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from bingnn.graphs.node_metrics import node_score
from bingnn.train.distributed import DistContext
from bingnn.train.objective import EdgeGraph
from bingnn.train.task import Batch, Task

__all__ = ["MODES", "EVAL_MODES", "NodeTask", "split_index"]

MODES = ("full", "minibatch")
EVAL_MODES = ("full", "layerwise")
KD_NODES = ("all", "train")


def split_index(data: Data, split: str) -> Tensor:
    """Node ids of ``split`` (``train``/``val``/``test``) from ``<split>_mask`` or
    ``<split>_idx`` attributes."""
    for key in (f"{split}_mask", f"{split}_idx"):
        v = getattr(data, key, None)
        if v is not None:
            return v.nonzero().view(-1) if v.dtype == torch.bool else v.long().view(-1)
    raise ValueError(f"the graph has no {split}_mask or {split}_idx")


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


class NodeTask(Task):
    """Node classification on ``data`` (``x``, ``y``, ``edge_index`` and train/val/test masks
    or index tensors).

    Args:
        data: the graph (kept on the CPU; moved to ``device`` once for full-batch steps).
        num_classes: model outputs (tasks, for multi-label data).
        metric: ``"acc"``, ``"rocauc"`` or ``"ogb"`` (``evaluator`` scores).
        evaluator: an OGB ``Evaluator`` for ``metric="ogb"``.
        multilabel: ``y`` holds independent binary tasks.
        mode: ``"full"`` or ``"minibatch"``; ``fanouts`` and ``batch_size`` configure the
            latter.
        eval_mode: ``"full"`` forward or ``"layerwise"`` inference (``eval_batch_size``
            target nodes per step).
        kd_over_all_nodes: KD over every node (module docstring); set it when distilling
            with ``kd_nodes="all"``.
        seed: seed of the mini-batch order and the sampling.
        device: where the model runs.
    """

    def __init__(
        self,
        data: Data,
        num_classes: int,
        metric: str = "acc",
        evaluator: Any = None,
        multilabel: bool = False,
        mode: str = "full",
        fanouts: Sequence[int] = (15, 10, 5),
        batch_size: int = 1024,
        eval_mode: str = "full",
        eval_batch_size: int = 4096,
        kd_over_all_nodes: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        _check_data(data)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {', '.join(EVAL_MODES)}, got {eval_mode!r}")
        if metric not in ("acc", "rocauc", "ogb"):
            raise ValueError(f"metric must be acc, rocauc or ogb, got {metric!r}")
        if metric == "ogb" and evaluator is None:
            raise ValueError("metric 'ogb' needs an OGB Evaluator")
        if mode == "minibatch":
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            if not fanouts or any(int(k) == 0 or int(k) < -1 for k in fanouts):
                raise ValueError(f"fan-outs must be positive or -1 (all), got {list(fanouts)}")
        if mode == "minibatch" and data.x.layout != torch.strided:
            # the sampler slices rows of x; a shallow copy keeps the caller's sparse features
            data = copy.copy(data)
            data.x = data.x.to_dense()
        self.data = data
        self.num_classes = int(num_classes)
        self.metric, self.evaluator, self.multilabel = metric, evaluator, bool(multilabel)
        self.metrics = (evaluator.eval_metric if metric == "ogb" else metric,)
        self.mode, self.fanouts, self.batch_size = mode, [int(k) for k in fanouts], batch_size
        self.eval_mode, self.eval_batch_size = eval_mode, int(eval_batch_size)
        self.kd_over_all_nodes = bool(kd_over_all_nodes)
        self.replicated_inputs = mode == "full"
        self.seed = int(seed)
        self.device = torch.device(device)
        self.idx = {s: split_index(data, s) for s in ("train", "val", "test")}
        if self.idx["train"].numel() == 0:
            raise ValueError("the training split is empty")
        if self.idx["val"].numel() == 0:
            raise ValueError("the validation split is empty: model selection needs one")
        self._on_device: Data | None = None
        self._csr = None

    # -- data ---------------------------------------------------------------------------

    def graph(self) -> Data:
        """The whole graph on the task's device (moved once)."""
        if self._on_device is None:
            # Data.to() moves in place: move a shallow copy, the caller's graph stays put
            self._on_device = copy.copy(self.data).to(self.device)
        return self._on_device

    def model_dims(self) -> dict[str, int]:
        return {"in_channels": int(self.data.num_features), "out_channels": self.num_classes}

    def _full_batch(self, ctx: DistContext) -> Batch:
        g = self.graph()
        train = self.idx["train"].to(self.device)
        kd = torch.arange(g.num_nodes, device=self.device) if self.kd_over_all_nodes else train
        return Batch(
            inputs=(g.x, g.edge_index),
            y=g.y,
            size=int(train.numel()),
            ce_rows=ctx.shard(train),
            ce_total=int(train.numel()),
            kd_rows=ctx.shard(kd),
            kd_total=int(kd.numel()),
            lsp_share=1.0 / ctx.world,
            cache_key="full",
        )

    def _seed_pool(self) -> Tensor:
        return torch.arange(self.data.num_nodes) if self.kd_over_all_nodes else self.idx["train"]

    def global_seed_batches(self, epoch: int, world: int = 1) -> list[Tensor]:
        """The global mini-batches of seed nodes of ``epoch`` (a function of ``(seed,
        epoch)``)."""
        pool = self._seed_pool()
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = pool[torch.randperm(pool.numel(), generator=g)]
        batches = list(perm.split(self.batch_size))
        if batches and len(batches[-1]) < world:
            batches.pop()
        return batches

    def _sampled_batches(self, epoch: int, ctx: DistContext) -> Iterator[Batch]:
        from bingnn.graphs.sampler import CSRGraph, sample_neighbors

        if self._csr is None:
            self._csr = CSRGraph.from_edge_index(self.data.edge_index, self.data.num_nodes)
        is_train = torch.zeros(self.data.num_nodes, dtype=torch.bool)
        is_train[self.idx["train"]] = True
        gen = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 64 + ctx.rank)
        batches = self.global_seed_batches(epoch, ctx.world)
        if not batches:
            raise ValueError(f"no mini-batch of at least {ctx.world} seed nodes")
        for seeds in batches:
            local = ctx.shard(seeds)
            sub = sample_neighbors(self._csr, local, self.fanouts, gen)
            labelled = is_train[sub.n_id[: sub.batch_size]].nonzero().view(-1)
            yield Batch(
                inputs=(self.data.x[sub.n_id].to(self.device),
                        sub.edge_index.to(self.device)),
                y=self.data.y[sub.n_id].to(self.device),
                size=int(seeds.numel()),
                ce_rows=labelled.to(self.device),
                ce_total=int(is_train[seeds].sum()),
                kd_rows=torch.arange(sub.batch_size, device=self.device),
                kd_total=int(seeds.numel()),
                lsp_share=local.numel() / seeds.numel(),
            )

    def train_batches(self, epoch: int, ctx: DistContext) -> Iterator[Batch]:
        if self.mode == "full":
            yield self._full_batch(ctx)
        else:
            yield from self._sampled_batches(epoch, ctx)

    def recalibration_batches(self, ctx: DistContext, samples: int | None = None
                              ) -> Iterable[Batch]:
        if samples is not None:
            raise ValueError("recalibrate_samples applies to point clouds; a node task "
                             "recalibrates on its whole graph (remove the setting)")
        g = self.graph()
        return [Batch(inputs=(g.x, g.edge_index), y=None, size=int(g.num_nodes),
                      lsp_share=1.0 / ctx.world)]

    # -- model --------------------------------------------------------------------------

    def forward(self, model: nn.Module, batch: Batch, structure: bool):
        if not structure:
            return model(*batch.inputs), None
        logits, hidden = model(*batch.inputs, return_hidden=True)
        edge_index = batch.inputs[1]
        return logits, [EdgeGraph(h, edge_index) for h in hidden]

    @torch.no_grad()
    def predict(self, model: nn.Module) -> Tensor:
        """Logits of every node in eval mode (full forward or layer-wise inference)."""
        was = model.training
        model.eval()
        g = self.graph()
        try:
            if self.eval_mode == "layerwise":
                return model.inference(g.x, g.edge_index, batch_size=self.eval_batch_size)
            return model(g.x, g.edge_index)
        finally:
            model.train(was)

    def evaluate(self, model: nn.Module, split: str, ctx: DistContext) -> dict[str, float]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        logits = self.predict(model)
        idx = self.idx[split].to(logits.device)
        y = self.graph().y
        return {self.metrics[0]: node_score(logits, y, idx, self.metric, self.evaluator)}

    @torch.no_grad()
    def preflight(self, model: nn.Module) -> None:
        was = model.training
        model.eval()
        try:
            if self.mode == "full":
                # the graph every step will see (a GCN caching its normalised adjacency must
                # cache this one)
                g = self.graph()
                model(g.x, g.edge_index)
            else:
                from torch_geometric.utils import subgraph

                nodes = torch.arange(min(8, self.data.num_nodes))
                ei, _ = subgraph(nodes, self.data.edge_index, relabel_nodes=True,
                                 num_nodes=self.data.num_nodes)
                model(self.data.x[nodes].to(self.device), ei.to(self.device))
        finally:
            model.train(was)
