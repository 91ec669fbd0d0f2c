"""bingnn inference engine: packed-bit kernels over the native extension, numpy only.

This package never imports PyTorch (nor the training side of bingnn), so a deployed model runs
with numpy and ``bingnn._native`` alone. The kernels live in :mod:`bingnn.engine.kernels`; the
bit layout they share is described there and in ``docs/bit_layout.md``.
"""
