"""The training stack of both families (point clouds and graphs).

- :mod:`~bingnn.train.trainer`: :func:`fit`, the one epoch loop (validation-based selection,
  checkpoint/resume, test for the report only);
- :mod:`~bingnn.train.task`: what a learning problem provides (:class:`Task`, :class:`Batch`),
  with :mod:`~bingnn.train.pointcloud_task` and :mod:`bingnn.graphs.node_task`;
- :mod:`~bingnn.train.objective`: CE + KD + LSP;
- :mod:`~bingnn.train.optim`: optimisers and the one scheduler factory;
- :mod:`~bingnn.train.distributed`: torchrun / DDP, sharding, BatchNorm over all processes;
- :mod:`~bingnn.train.checkpoint`, :mod:`~bingnn.train.model_files`,
  :mod:`~bingnn.train.metrics_log`, :mod:`~bingnn.train.report`, :mod:`~bingnn.train.plots`:
  files a run leaves behind.

Recipes and the cascade runner live in :mod:`bingnn.distill`.
"""

from bingnn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bingnn.train.metrics_log import MetricsLog, read_metrics

__all__ = [
    "CheckpointError",
    "MetricsLog",
    "load_checkpoint",
    "read_metrics",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
