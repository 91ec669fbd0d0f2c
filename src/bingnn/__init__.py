"""bingnn: binary graph neural networks.

The package has two halves that never mix:

* the training library (``bingnn.nn``, ``bingnn.models``, ``bingnn.distill``, ``bingnn.train``,
  ``bingnn.data``), built on PyTorch;
* the inference engine (``bingnn.engine``), numpy plus the native extension, importable without
  PyTorch.

This top-level module imports neither, so ``import bingnn.engine`` stays torch-free.
"""

__version__ = "0.1.0"
