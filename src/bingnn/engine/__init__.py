"""bingnn inference engine: packed-bit kernels over the native extension, numpy only.

This package never imports PyTorch (nor the training side of bingnn), so a deployed model runs
with numpy and ``bingnn._native`` alone. The kernels live in :mod:`bingnn.engine.kernels`; the
bit layout they share is described there and in ``docs/bit_layout.md``.

Example::

    import bingnn.engine
    model = bingnn.engine.load("model.bgnn")      # written by `bingnn export`
    labels = model.predict(points)                # points (B, N, 3) or (N, 3) float
    scores = model.logits(points)                 # (B, classes) float32
"""

from bingnn.engine.format import FORMAT_VERSION, ModelFileError, read_model_file
from bingnn.engine.model import EngineModel, expected_arrays, load

__all__ = [
    "FORMAT_VERSION",
    "EngineModel",
    "ModelFileError",
    "expected_arrays",
    "load",
    "read_model_file",
]
