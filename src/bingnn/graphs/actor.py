"""Actor (the "film" actor co-occurrence graph of Pei et al., "Geom-GCN: Geometric Graph
Convolutional Networks", ICLR 2020) through PyG's ``Actor`` loader.

7,600 actors, 5 classes, 932 binary features (PyG sizes the matrix by the largest feature id;
the raw file's header says 931), 30,019 directed edges after PyG's processing (33,391 rows in
the raw file; PyG keeps the file's directions, drops duplicates, and keeps self-loops). A
heterophilous graph: neighbours often have other labels.

Splits: the 10 standard Geom-GCN splits (``film_split_0.6_0.2_{0..9}.npz``; despite the name
each holds 3,648 / 2,432 / 1,520 nodes, 48/32/20%). PyG returns them as ``(N, 10)`` masks;
:func:`actor_split` picks split ``i`` (the node commands use split ``i`` for run seed ``i``,
so ``--seed 0 --seeds 10`` covers the ten standard splits once).

Offline, point ``raw_dir`` at a folder holding ``out1_node_feature_label.txt``,
``out1_graph_edges.txt`` and the ten split files: they are copied into ``<root>/actor/raw``
and PyG processes them there (``<root>/actor/processed``); online, ``download=True`` lets PyG
fetch them from the Geom-GCN repository.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch_geometric.data import Data

__all__ = ["NUM_SPLITS", "RAW_FILES", "actor_split", "load_actor"]

NUM_SPLITS = 10
RAW_FILES = ("out1_node_feature_label.txt", "out1_graph_edges.txt",
             *(f"film_split_0.6_0.2_{i}.npz" for i in range(NUM_SPLITS)))


def load_actor(root: str | os.PathLike, raw_dir: str | os.PathLike | None = None,
               download: bool = False) -> Data:
    """Load Actor as PyG's ``Actor`` gives it: dense 0/1 ``x (7600, 932)``, ``y``,
    ``edge_index`` (PyG's orientation), and ``(7600, 10)`` boolean split masks.

    Args:
        root: data root; PyG's dataset folder is ``<root>/actor``.
        raw_dir: folder with the raw files (module docstring) to copy in (offline use).
        download: let PyG download missing raw files (needs internet).

    Raises:
        ValueError: raw files missing (and ``download`` off), or damaged.
    """
    folder = Path(root) / "actor"
    raw = folder / "raw"
    if raw_dir is not None:
        src = Path(raw_dir)
        missing = [f for f in RAW_FILES if not (src / f).is_file()]
        if missing:
            raise ValueError(f"{src} lacks the Actor raw files {missing}")
        raw.mkdir(parents=True, exist_ok=True)
        for f in RAW_FILES:
            if not (raw / f).is_file() or (raw / f).read_bytes() != (src / f).read_bytes():
                shutil.copyfile(src / f, raw / f)
                _drop_processed(folder)  # new raw files: PyG must process them again
    if not download and not (folder / "processed" / "data.pt").is_file():
        missing = [f for f in RAW_FILES if not (raw / f).is_file()]
        if missing:
            raise ValueError(f"Actor raw files missing in {raw}: {missing}; pass raw_dir= "
                             "(--raw-dir) the folder with them, or download=True (--download)")

    from torch_geometric.datasets import Actor

    try:
        data = Actor(str(folder))[0]
    except Exception as e:  # noqa: BLE001 - PyG raises bare errors for damaged raw files
        raise ValueError(f"could not read Actor from {raw} ({type(e).__name__}: {e}); copy "
                         "the raw files again (raw_dir=) or download them (download=True)"
                         ) from e
    if data.train_mask.dim() != 2 or data.train_mask.size(1) != NUM_SPLITS:
        raise ValueError(f"Actor in {folder} has split masks of shape "
                         f"{tuple(data.train_mask.shape)}, expected (N, {NUM_SPLITS}); delete "
                         f"{folder / 'processed'} and load again")
    return data


def _drop_processed(folder: Path) -> None:
    shutil.rmtree(folder / "processed", ignore_errors=True)


def actor_split(data: Data, split: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean ``(N,)`` train / validation / test masks of standard split ``split`` (0-9).

    Raises:
        ValueError: ``split`` outside 0-9.
    """
    if not 0 <= int(split) < NUM_SPLITS:
        raise ValueError(f"Actor has {NUM_SPLITS} standard splits, numbered 0-9, and run seed "
                         f"s uses split s; got seed {split}: run seeds 0-9 (--seed 0 --seeds 10)")
    return data.train_mask[:, split], data.val_mask[:, split], data.test_mask[:, split]
