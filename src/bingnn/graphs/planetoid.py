"""Planetoid citation graphs (Cora, CiteSeer, PubMed) through PyG's ``Planetoid`` loader.

Offline, point ``raw_dir`` at a folder holding the original ``ind.<name>.*`` files: they are
copied into ``<root>/<Name>/raw/`` and processed there; online, ``download=True`` lets PyG
fetch them. Split: the standard public one (20 labels per class for training, 500 validation,
1,000 test nodes).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch_geometric.data import Data

from bingnn.graphs.names import PLANETOID

__all__ = ["PLANETOID", "RAW_SUFFIXES", "load_planetoid"]

#: canonical names as PyG spells them
RAW_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def load_planetoid(name: str, root: str | os.PathLike, raw_dir: str | os.PathLike | None = None,
                   download: bool = False) -> Data:
    """Load one Planetoid graph as a PyG ``Data`` (``x``, ``y``, ``edge_index``, and boolean
    ``train_mask``/``val_mask``/``test_mask``).

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"`` (any case).
        root: dataset cache folder; the processed graph lives in ``<root>/<Name>/processed``.
        raw_dir: folder with the original ``ind.<name>.*`` files to copy in (offline use).
        download: let PyG download missing raw files (needs internet).

    Raises:
        ValueError: unknown name, or raw files missing and ``download`` is off.
    """
    key = str(name).lower()
    if key not in PLANETOID:
        raise ValueError(f"unknown Planetoid dataset {name!r}; choose one of {sorted(PLANETOID)}")
    pyg_name = PLANETOID[key]
    raw = Path(root) / pyg_name / "raw"
    needed = [f"ind.{key}.{s}" for s in RAW_SUFFIXES]
    if raw_dir is not None:
        src = Path(raw_dir)
        missing = [f for f in needed if not (src / f).is_file()]
        if missing:
            raise ValueError(f"{src} lacks the raw files {missing} of {pyg_name}")
        raw.mkdir(parents=True, exist_ok=True)
        for f in needed:
            if not (raw / f).is_file():
                shutil.copyfile(src / f, raw / f)
    processed = Path(root) / pyg_name / "processed" / "data.pt"
    if not download and not processed.is_file():
        missing = [f for f in needed if not (raw / f).is_file()]
        if missing:
            raise ValueError(
                f"{pyg_name} raw files missing in {raw}: {missing}; pass raw_dir= (the folder "
                "with the ind.* files) or download=True"
            )

    from torch_geometric.datasets import Planetoid

    try:
        ds = Planetoid(str(root), pyg_name)
    except Exception as e:  # noqa: BLE001 - PyG raises bare errors for damaged raw files
        raise ValueError(f"could not read {pyg_name} from {raw}: {e}") from e
    return ds[0]
