"""Process-wide switches of the training library, torch-free so that ``bingnn.debug`` can live
at the top level without importing PyTorch.

* **debug**: every layer re-checks its inputs (finite values, index ranges) instead of relying on
  the one check at the model's entry. The per-layer checks scan whole tensors and synchronise
  with the device, so they are off by default (PyTorch Geometric's ``torch_geometric.debug``
  follows the same idea).
* **reference**: the point-cloud layers run their plain formulation (edge features materialised
  for every (point, neighbour) pair, every per-edge operation applied edge by edge, k-NN by a
  stable sort) instead of the fast one. Both compute the same function; the reference is what
  tests and benchmarks compare the fast paths against. ``BINGNN_REFERENCE=1`` in the
  environment turns it on for the whole process (read at import), so a whole training command
  can be rerun in the plain formulation, e.g.
  ``BINGNN_REFERENCE=1 bingnn distill --recipe quick --out runs/quick-plain``.
"""

from __future__ import annotations

import os
from typing import Any

_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


def _env_switch(name: str) -> tuple[bool, str | None]:
    """The switch ``name`` of the environment, and the error to raise when it is not one."""
    value = os.environ.get(name, "").strip().lower()
    if value in _ON or value in _OFF:
        return value in _ON, None
    return False, f"{name}={os.environ[name]!r} is not a switch: set it to 1 (on) or 0 (off)"


_reference_env, _env_error = _env_switch("BINGNN_REFERENCE")
_state = {"debug": False, "reference": _reference_env}


def check_environment() -> None:
    """Raise ``ValueError`` if a ``BINGNN_*`` switch of the environment has a value that is not
    on or off. A typo must not silently train in the other formulation; the error is deferred
    to here (and the first layer that asks) so that importing bingnn never fails."""
    if _env_error is not None:
        raise ValueError(_env_error)


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
    check_environment()
    return _state["reference"]
