"""Training utilities: checkpoints, metrics logs, the epoch loop, optimizers and plots."""

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
