"""Small helpers shared by the training library and the engine (no PyTorch import here)."""
