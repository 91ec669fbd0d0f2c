"""Per-epoch metrics as a CSV file that survives crashes and resumes.

Every :meth:`MetricsLog.append` rewrites the whole file atomically (the files hold one row per
epoch, so this is cheap): a reader never sees a half-written row. When a run resumes from a
checkpoint saved at epoch ``e``, :meth:`MetricsLog.truncate` drops rows written after it (for
instance an epoch whose row was logged but whose checkpoint was not).

Example::

    log = MetricsLog("run/metrics.csv", ["epoch", "loss", "val_oa"])
    log.truncate(after_epoch=start_epoch)          # on resume
    log.append({"epoch": 1, "loss": 0.7, "val_oa": 0.81})
    rows = log.rows()                               # [{"epoch": 1, "loss": 0.7, ...}]
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bingnn.utils.atomic import atomic_write_text

__all__ = ["MetricsLog", "read_metrics"]


def _parse(value: str) -> Any:
    """CSV cell -> int, float or the string itself."""
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a metrics CSV with numbers parsed back to ``int``/``float``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"metrics file not found: {p}")
    with open(p, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


class MetricsLog:
    """Append-only (and truncatable) CSV log with a fixed header.

    Args:
        path: the CSV file; created on the first :meth:`append`.
        fieldnames: column names, in order. If the file exists, its header must match.
        key: the column that orders rows (used by :meth:`truncate`), default ``"epoch"``.
    """

    def __init__(
        self, path: str | os.PathLike, fieldnames: Sequence[str], key: str = "epoch"
    ) -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        if not self.fieldnames:
            raise ValueError("a metrics log needs at least one column")
        if len(set(self.fieldnames)) != len(self.fieldnames):
            raise ValueError(f"duplicate column names in {self.fieldnames}")
        if key not in self.fieldnames:
            raise ValueError(f"key column {key!r} is not among the columns {self.fieldnames}")
        self.key = key
        if self.path.exists():
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header is not None and header != self.fieldnames:
                raise ValueError(
                    f"{self.path} has columns {header}, expected {self.fieldnames}; "
                    "use another output folder or delete the file"
                )

    def rows(self) -> list[dict[str, Any]]:
        """All rows logged so far (numbers parsed), ``[]`` if the file does not exist."""
        return read_metrics(self.path) if self.path.exists() else []

    def rewrite(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the whole file with ``rows`` (atomically)."""
        for r in rows:
            extra = set(r) - set(self.fieldnames)
            if extra:
                raise ValueError(f"unknown columns {sorted(extra)}; known: {self.fieldnames}")
        self._write(rows)

    def _write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fieldnames, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _format(r.get(k)) for k in self.fieldnames})
        atomic_write_text(self.path, buf.getvalue())

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row; unknown keys raise ``ValueError``, missing ones are left blank."""
        extra = set(row) - set(self.fieldnames)
        if extra:
            raise ValueError(f"unknown metric columns {sorted(extra)}; known: {self.fieldnames}")
        self._write([*self.rows(), row])

    def truncate(self, after_epoch: int) -> None:
        """Drop rows whose key column is greater than ``after_epoch`` (resume bookkeeping)."""
        if not self.path.exists():
            return
        rows = self.rows()
        kept = [r for r in rows if r.get(self.key) is not None and r[self.key] <= after_epoch]
        if len(kept) != len(rows):
            self._write(kept)
