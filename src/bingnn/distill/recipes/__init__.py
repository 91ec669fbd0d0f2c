"""Versioned cascaded-distillation recipes (TOML), loaded by :mod:`bingnn.distill.recipe`."""
