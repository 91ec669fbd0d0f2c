"""Process-wide switches of the training library, torch-free so that ``bingnn.debug`` can live
at the top level without importing PyTorch.

* **debug**: every layer re-checks its inputs (finite values, index ranges) instead of relying on
  the one check at the model's entry. The per-layer checks scan whole tensors and synchronise
  with the device, so they are off by default (PyTorch Geometric's ``torch_geometric.debug``
  follows the same idea).
* **reference**: the point-cloud layers run their plain formulation (edge features materialised
  for every (point, neighbour) pair, every per-edge operation applied edge by edge, k-NN by a
  stable sort) instead of the fast one. Both compute the same function; the reference is what
  tests and benchmarks compare the fast paths against.
"""

from __future__ import annotations

from typing import Any

_state = {"debug": False, "reference": False}


class _Switch:
    """Context manager (and decorator-free toggle) that sets one flag and restores it."""

    key = ""

    def __init__(self, mode: bool = True) -> None:
        self.prev = _state[self.key]
        self.mode = bool(mode)
        _state[self.key] = self.mode

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        _state[self.key] = self.prev


class debug(_Switch):  # noqa: N801 - used like a function: ``with bingnn.debug(): ...``
    """Per-layer input checks on (``with bingnn.debug(): ...``, or ``bingnn.debug(False)``
    inside to switch them off again)."""

    key = "debug"


class reference_mode(_Switch):  # noqa: N801
    """Run the point-cloud layers in their plain (reference) formulation inside the block."""

    key = "reference"


def set_debug(mode: bool) -> None:
    """Turn the per-layer input checks on or off for the whole process."""
    _state["debug"] = bool(mode)


def is_debug_enabled() -> bool:
    """Whether per-layer input checks are on."""
    return _state["debug"]


def set_reference_mode(mode: bool) -> None:
    """Select the plain (``True``) or the fast (``False``, default) formulation of the
    point-cloud layers for the whole process."""
    _state["reference"] = bool(mode)


def is_reference_mode() -> bool:
    """Whether the point-cloud layers run their plain formulation."""
    return _state["reference"]
