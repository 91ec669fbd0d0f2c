"""Errors of the engine's model files, in a module of their own so that the readers of every
format version (:mod:`bingnn.engine.format`, :mod:`bingnn.engine.legacy`) share them without
importing each other."""

from __future__ import annotations

__all__ = ["LegacyFormatWarning", "ModelFileError"]


class ModelFileError(ValueError):
    """A model file exists but cannot be used (corrupt, truncated, foreign or too new)."""


class LegacyFormatWarning(UserWarning):
    """A format 1 model file was read: its description is not covered by the checksum."""
