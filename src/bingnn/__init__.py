"""bingnn: binary graph neural networks.

The package has two halves that never mix:

* the training library (``bingnn.nn``, ``bingnn.models``, ``bingnn.distill``, ``bingnn.train``,
  ``bingnn.data``), built on PyTorch;
* the inference engine (``bingnn.engine``), numpy plus the native extension, importable without
  PyTorch.

This top-level module imports neither, so ``import bingnn.engine`` stays torch-free.

``bingnn.debug()`` (a context manager, like ``torch_geometric.debug``) turns on per-layer input
checks; by default models check their input once, at entry.
"""

from bingnn._flags import debug, is_debug_enabled, set_debug

__version__ = "0.1.0"
__all__ = ["debug", "is_debug_enabled", "set_debug", "__version__"]
