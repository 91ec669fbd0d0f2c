"""Where the real data sets of ``../shared/data`` are (see its README.md).

The folder sits beside the project's checkout (``<checkout>/../shared/data``); from a git
worktree nested one level deeper it is further up, so every parent of the checkout is tried.
"""

from __future__ import annotations

from pathlib import Path


def shared_data(name: str) -> Path | None:
    """``shared/data/<name>`` in the nearest parent folder that has it, or ``None``."""
    for parent in Path(__file__).resolve().parents[1:]:
        folder = parent / "shared" / "data" / name
        if folder.is_dir():
            return folder
    return None
