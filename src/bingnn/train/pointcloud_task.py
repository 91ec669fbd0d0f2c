"""Point-cloud classification as a :class:`~bingnn.train.task.Task`.

Batches: every epoch draws one permutation of the training clouds from a generator seeded with
``(seed, epoch)`` and cuts it into global batches of ``batch_size``; a process takes the clouds
``rank::W`` of each global batch. A last global batch smaller than ``max(2, W)`` is dropped
(BatchNorm cannot train on one cloud; every process needs one). Augmentation draws depend on
``(seed, epoch, index)`` only (:class:`bingnn.data.datasets.PointCloudDataset`), so the data of a
step is the same whatever the number of processes, and a resumed run sees what a straight run
sees.

Scores: overall accuracy (``oa``, the selection metric) and mean per-class accuracy
(``macc``). Evaluation splits the clouds ``rank::W`` over the processes and gathers the
predictions.

Local structures for LSP: the k-NN graphs of the EdgeConv layers after the first; the first
graph is built on the xyz input, which teacher and student share (the paper's choice).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bingnn.train.distributed import DistContext
from bingnn.train.objective import KnnGraph
from bingnn.train.task import Batch, Task

__all__ = ["PointCloudTask", "epoch_permutation", "predict_clouds"]


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of ``n`` training examples in ``epoch``: a function of ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g)


@torch.no_grad()
def predict_clouds(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    ctx: DistContext | None = None,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels of every cloud of ``dataset`` (model in eval mode); with
    several processes each predicts the clouds ``rank::W`` and all gather the result."""
    ctx = ctx or DistContext(device=torch.device(device))
    n = len(dataset)  # type: ignore[arg-type]
    mine = ctx.shard(torch.arange(n)).tolist()
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    was = model.training
    model.eval()
    preds, labels = [], []
    try:
        for points, y in loader:
            logits = model(points.to(device, non_blocking=True))
            preds.append(logits.argmax(-1).cpu())
            labels.append(y)
    finally:
        model.train(was)
    local_p = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
    local_y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
    return ctx.gather_rows(local_p, n).numpy(), ctx.gather_rows(local_y, n).numpy()


def _recalibration_subset(ds: Dataset, samples: int, seed: int) -> np.ndarray:
    """Indices of ``samples`` clouds of ``ds``: class-stratified where it has ``labels``,
    else a seeded draw; ascending."""
    from bingnn.data.splits import stratified_subset

    labels = getattr(ds, "labels", None)
    if labels is not None:
        return stratified_subset(np.asarray(labels), int(samples), seed)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(ds), size=int(samples), replace=False))  # type: ignore[arg-type]


class PointCloudTask(Task):
    """Classify point clouds ``(B, N, 3)`` into ``num_classes`` classes.

    Args:
        train, val, test: datasets of ``(points (N, 3), label)`` items
            (:func:`bingnn.data.get_dataset`); ``test`` is read by :meth:`evaluate` only.
        batch_size: clouds per global training batch (all processes together).
        eval_batch_size: clouds per evaluation step and process.
        seed: seed of the data order.
        device: where batches go.
        num_workers: ``DataLoader`` worker processes (0: load in the main process).
    """

    metrics = ("oa", "macc")

    def __init__(
        self,
        train: Dataset,
        val: Dataset,
        test: Dataset,
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
    ) -> None:
        for name, ds in (("train", train), ("val", val), ("test", test)):
            if len(ds) == 0:  # type: ignore[arg-type]
                raise ValueError(f"the {name} set is empty")
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}"
            )
        self.splits = {"train": train, "val": val, "test": test}
        self.num_classes = int(train.num_classes)  # type: ignore[attr-defined]
        for name in ("val", "test"):
            nc = int(self.splits[name].num_classes)  # type: ignore[attr-defined]
            if nc != self.num_classes:
                raise ValueError(f"the {name} set has {nc} classes, the training set "
                                 f"{self.num_classes}")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.num_workers = int(num_workers)

    def model_dims(self) -> dict[str, int]:
        return {"num_classes": self.num_classes}

    def _loader(self, ds: Dataset, batches: list[list[int]]) -> DataLoader:
        return DataLoader(
            ds,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _global_batches(self, epoch: int, ctx: DistContext) -> list[Tensor]:
        train = self.splits["train"]
        n = len(train)  # type: ignore[arg-type]
        perm = epoch_permutation(n, self.seed, epoch)
        batches = list(perm.split(self.batch_size))
        if len(batches[-1]) < max(2, ctx.world) and n > 1:
            batches.pop()
        if not batches:
            raise ValueError(
                f"{n} training clouds make no batch of at least {max(2, ctx.world)} "
                f"(batch size {self.batch_size}, {ctx.world} processes); use more clouds"
            )
        return batches

    def train_batches(self, epoch: int, ctx: DistContext) -> Iterator[Batch]:
        train = self.splits["train"]
        if hasattr(train, "set_epoch"):
            train.set_epoch(epoch)
        glob = self._global_batches(epoch, ctx)
        local = [ctx.shard(b).tolist() for b in glob]
        for g, (points, labels) in zip(glob, self._loader(train, local), strict=True):
            yield self._batch(points, labels, len(g))

    def _batch(self, points: Tensor, labels: Tensor, global_size: int) -> Batch:
        points = points.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        return Batch(
            inputs=(points,),
            y=labels,
            size=global_size,
            ce_total=global_size,
            kd_total=global_size,
            lsp_share=labels.shape[0] / global_size,
        )

    def forward(self, model: nn.Module, batch: Batch, structure: bool):
        if not structure:
            return model(*batch.inputs), None
        logits, graphs = model(*batch.inputs, return_graphs=True)
        return logits, [KnnGraph(f, i) for f, i in graphs[1:]]

    def recalibration_batches(self, ctx: DistContext, samples: int | None = None
                              ) -> Iterable[Batch]:
        """The un-augmented training clouds in evaluation batches; with ``samples``, the same
        seeded, class-stratified subset of that many clouds at every epoch (BatchNorm's
        statistics over a few hundred thousand points do not need every cloud, and the full
        pass costs 18-25% of a ModelNet10 binary stage's epoch)."""
        plain = copy.copy(self.splits["train"])  # the same clouds, without augmentation
        plain.augment = False  # type: ignore[attr-defined]
        n = len(plain)  # type: ignore[arg-type]
        order = torch.arange(n)
        if samples is not None:
            if isinstance(samples, bool) or samples < 1:
                raise ValueError(f"recalibrate_samples must be a count >= 1, got {samples!r}")
            if samples < n:
                order = torch.from_numpy(_recalibration_subset(plain, samples, self.seed))
        n = len(order)
        glob = list(order.split(self.eval_batch_size))
        if len(glob) > 1 and len(glob[-1]) < max(2, ctx.world):
            # BatchNorm needs two clouds and every process one: a short last batch joins the
            # one before it
            glob[-2:] = [torch.cat(glob[-2:])]
        if n < ctx.world:
            raise ValueError(f"{n} training clouds cannot be shared by {ctx.world} processes")
        local = [ctx.shard(b).tolist() for b in glob]
        for g, (points, labels) in zip(glob, self._loader(plain, local), strict=True):
            yield self._batch(points, labels, len(g))

    def predict(
        self, model: nn.Module, split: str, ctx: DistContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted and true labels of every cloud of ``split`` (model in eval mode)."""
        return predict_clouds(model, self.splits[split], self.eval_batch_size, self.device, ctx,
                              self.num_workers)

    def evaluate(self, model: nn.Module, split: str, ctx: DistContext) -> dict[str, float]:
        from bingnn.data.metrics import mean_class_accuracy, overall_accuracy

        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        pred, true = self.predict(model, split, ctx)
        return {
            "oa": overall_accuracy(pred, true),
            "macc": mean_class_accuracy(pred, true, self.num_classes),
        }

    @torch.no_grad()
    def preflight(self, model: nn.Module) -> None:
        val = self.splits["val"]
        points = torch.stack([val[i][0] for i in range(min(2, len(val)))])  # type: ignore
        was = model.training
        model.eval()
        try:
            model(points.to(self.device))
        finally:
            model.train(was)
