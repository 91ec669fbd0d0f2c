"""What the trainer needs from a learning problem: its batches, its forward pass and its
evaluation.

The trainer (:func:`bingnn.train.trainer.fit`) owns the epoch loop, the objective, the
optimiser, checkpoints and model selection; a :class:`Task` owns the data. Two tasks exist:
point-cloud classification (:class:`bingnn.train.pointcloud_task.PointCloudTask`) and node
classification on one graph, full batch or neighbour-sampled
(:class:`bingnn.graphs.node_task.NodeTask`).

A task yields :class:`Batch` objects. A batch says which output rows carry a label for the
cross-entropy (``ce_rows``) and which are distilled from the teacher (``kd_rows``), and how
many such rows the *global* batch has over all processes (``ce_total``, ``kd_total``), so that
every loss term is a sum over local rows divided by a global count: the same number whether one
process or ``W`` processes compute it (:mod:`bingnn.train.distributed`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from bingnn.train.distributed import DistContext

__all__ = ["Batch", "Task"]


@dataclass
class Batch:
    """One training step's share of the data for this process.

    Attributes:
        inputs: positional arguments of the model (``(points,)`` or ``(x, edge_index)``).
        y: labels of every output row (``(R,)`` class indices, or ``(R, T)`` for multi-label
            tasks); ``None`` when no row carries a label.
        size: examples in the global batch (all processes), the weight of this step in the
            epoch's averages.
        ce_rows: output rows that carry a label; ``None`` means all rows.
        kd_rows: output rows distilled from the teacher; ``None`` means ``ce_rows``.
        ce_total, kd_total: the number of such rows in the global batch; ``None`` means the
            local count (one process).
        lsp_share: weight of this process's local-structure term (its share of the global
            batch; ``1 / W`` when every process sees the same graph).
        cache_key: set when the inputs are the same at every epoch (full-batch graphs): the
            frozen teacher's outputs are then computed once and reused.
    """

    inputs: tuple[Any, ...]
    y: Tensor | None
    size: int
    ce_rows: Tensor | None = None
    kd_rows: Tensor | None = None
    ce_total: int | None = None
    kd_total: int | None = None
    lsp_share: float = 1.0
    cache_key: Hashable | None = None


class Task(ABC):
    """A learning problem the trainer can fit a model to.

    ``metrics`` names the evaluation scores (fractions, higher is better); the first one
    selects the model on the validation split. ``multilabel`` tasks take binary
    cross-entropy per output instead of a softmax cross-entropy.
    """

    metrics: tuple[str, ...]
    multilabel: bool = False
    #: Every process runs the model on the same inputs (a full-batch graph), only the loss
    #: rows are split: BatchNorm statistics are already those of the whole batch and must not
    #: be synchronised (they would count every row once per process).
    replicated_inputs: bool = False

    @property
    def selection_metric(self) -> str:
        return self.metrics[0]

    @abstractmethod
    def model_dims(self) -> dict[str, int]:
        """The entries of a model config that come from the data (``num_classes``, or
        ``in_channels``/``out_channels``)."""

    @abstractmethod
    def train_batches(self, epoch: int, ctx: DistContext) -> Iterator[Batch]:
        """This process's batches of training epoch ``epoch`` (1-based): the same sequence
        for the same ``(seed, epoch)``, whatever happened before (exact resume)."""

    @abstractmethod
    def forward(
        self, model: nn.Module, batch: Batch, structure: bool
    ) -> tuple[Tensor, list | None]:
        """Logits of every output row of ``batch`` and, with ``structure``, the model's local
        structures for LSP (a list of :class:`~bingnn.train.objective.KnnGraph` or
        :class:`~bingnn.train.objective.EdgeGraph`, one per distilled layer)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, split: str, ctx: DistContext) -> dict[str, float]:
        """Scores of ``model`` (eval mode) on ``split`` (``"val"`` or ``"test"``), the same on
        every process. The trainer reads ``"test"`` once, for the report, after training."""

    def recalibration_batches(self, ctx: DistContext, samples: int | None = None
                              ) -> Iterable[Batch]:
        """Un-augmented training batches for BatchNorm recalibration
        (:mod:`bingnn.train.bn_recalibration`): every training example, or a fixed, seeded
        subset of ``samples`` of them where the task supports it."""
        raise NotImplementedError(f"{type(self).__name__} does not support recalibrate_bn")

    @abstractmethod
    def preflight(self, model: nn.Module) -> None:
        """Run ``model`` once on a few examples (eval mode, no gradient), so that a model that
        cannot run on this data fails before a file is written."""
