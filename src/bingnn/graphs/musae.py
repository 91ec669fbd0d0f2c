"""Graphs in the MUSAE release format (Rozemberczki, Allen, Sarkar, "Multi-scale attributed
node embedding", Journal of Complex Networks 2021): Facebook Page-Page, GitHub, Twitch,
Deezer Europe and the Wikipedia page networks.

A release is three files sharing a stem:

- ``<stem>_edges.csv``: a header (``id_1,id_2``; ``node_1,node_2`` in Deezer Europe), then one
  undirected edge per line as two node ids;
- ``<stem>_target.csv``: a header naming an id column and the label column(s), one row per
  node (Facebook: ``id,facebook_id,page_name,page_type``);
- ``<stem>_features.json`` (``<stem>.json`` in some Twitch copies): ``{"node id": [active
  feature ids]}``.

The stem differs between copies: SNAP's archives use ``musae_facebook``, the authors' GitHub
repository (and ``../shared/data/facebook``) ``facebook``; each :class:`MusaeSpec` lists the
stems to try, the id and label columns, the download URL and, where known, the release's sizes.

What :func:`load_musae` returns (a PyG ``Data``):

- ``x``: ``(N, F)`` float32 **sparse CSR** matrix, 1.0 where a feature is active (``F`` = the
  largest feature id + 1); ``data.x.to_dense()`` for a dense copy;
- ``edge_index``: ``(2, E)`` int64 in PyG's orientation (row 0 source, row 1 target), each
  undirected edge of the release stored in both directions, duplicates removed, sorted by
  (source, target); a self-loop of the release is kept once. Facebook: 171,002 undirected
  edges (179 self-loops) -> 341,825 directed rows;
- ``y``: ``(N,)`` int64 class ids: the distinct labels in sorted order (numerically when they
  are integers), their names in ``data.class_names`` (Facebook: company, government,
  politician, tvshow); continuous targets (Wikipedia) are cut into ``label_bins`` quantile
  classes;
- ``train_mask``/``val_mask``/``test_mask``: the seeded stratified split of
  :func:`bingnn.graphs.splits.stratified_split` for ``split_seed``, 60/20/20 by default
  (Facebook, seed ``s``: 13,482 / 4,494 / 4,494 nodes). The node commands use split seed =
  run seed, so ``--seeds 10`` averages over ten splits.

The parsed graph is cached in ``<root>/<name>/processed/graph.npz`` (written atomically,
read without pickle) together with the SHA-256 of the raw files it came from; a changed raw
file is parsed again. Every damaged input (missing, empty or truncated file, Git LFS pointer
instead of data, bad header, non-integer or out-of-range id, invalid JSON, sizes other than
the release's) raises one ``ValueError`` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bingnn.graphs.splits import stratified_split
from bingnn.utils.atomic import atomic_open

__all__ = ["MUSAE", "MusaeGraph", "MusaeSpec", "download_musae", "find_musae_files",
           "load_musae", "musae_spec", "read_musae"]

#: version of the processed cache layout (bump to invalidate old caches)
CACHE_VERSION = 1
_SNAP = "https://snap.stanford.edu/data/"
_LFS_HEADER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class MusaeSpec:
    """Per-dataset settings of the MUSAE reader.

    Args:
        name: registry key and folder name under the data root (``"facebook"``).
        title: human-readable name used in messages.
        stems: file-name stems to try, in order (``("musae_facebook", "facebook")``).
        label_column: column of the target CSV holding the label.
        id_column: column of the target CSV holding the node id (Twitch: ``new_id``).
        feature_suffixes: file-name endings of the features JSON after the stem.
        label_bins: ``0``: the label is a class; ``k > 0``: a continuous target, cut into
            ``k`` quantile classes.
        url: the release archive (zip) to download; ``None`` if there is none.
        num_nodes, num_edges, num_features, num_classes: the release's sizes (undirected
            edges, self-loops included); when set, a file that disagrees is refused as
            truncated or foreign. ``None``: not checked.
    """

    name: str
    title: str
    stems: tuple[str, ...]
    label_column: str
    id_column: str = "id"
    feature_suffixes: tuple[str, ...] = ("_features.json",)
    label_bins: int = 0
    url: str | None = None
    num_nodes: int | None = None
    num_edges: int | None = None
    num_features: int | None = None
    num_classes: int | None = None

    def candidates(self, kind: str) -> list[str]:
        """File names to look for, for ``kind`` in ``edges``, ``target``, ``features``."""
        if kind == "features":
            return [s + suf for s in self.stems for suf in self.feature_suffixes]
        return [f"{s}_{kind}.csv" for s in self.stems]


def _twitch(code: str) -> MusaeSpec:
    return MusaeSpec(f"twitch-{code.lower()}", f"Twitch {code}", (f"musae_{code}", code),
                     "mature", id_column="new_id", feature_suffixes=("_features.json", ".json"),
                     url=_SNAP + "twitch.zip")


def _wikipedia(page: str) -> MusaeSpec:
    return MusaeSpec(f"wikipedia-{page}", f"Wikipedia {page}", (f"musae_{page}", page),
                     "target", label_bins=5, url=_SNAP + "wikipedia.zip")


#: The MUSAE-format releases the reader knows. Facebook Page-Page is checked against the real
#: files (``../shared/data/facebook``); the other entries follow the authors' descriptions of
#: their files and are exercised on fixtures only.
MUSAE: dict[str, MusaeSpec] = {
    s.name: s for s in [
        MusaeSpec("facebook", "Facebook Page-Page", ("musae_facebook", "facebook"), "page_type",
                  url=_SNAP + "facebook_large.zip", num_nodes=22_470, num_edges=171_002,
                  num_features=4_714, num_classes=4),
        MusaeSpec("github", "GitHub developers", ("musae_git", "git"), "ml_target",
                  url=_SNAP + "git_web_ml.zip"),
        *(_twitch(c) for c in ("DE", "ENGB", "ES", "FR", "PTBR", "RU")),
        MusaeSpec("deezer-europe", "Deezer Europe", ("deezer_europe",), "target",
                  url=_SNAP + "deezer_europe.zip"),
        *(_wikipedia(p) for p in ("chameleon", "crocodile", "squirrel")),
    ]
}


def musae_spec(name: str | MusaeSpec) -> MusaeSpec:
    """The spec of a registered release (by name), or ``name`` itself if it is a spec."""
    if isinstance(name, MusaeSpec):
        return name
    key = str(name).lower()
    if key not in MUSAE:
        raise ValueError(f"unknown MUSAE-format dataset {name!r}; choose one of {list(MUSAE)}")
    return MUSAE[key]


@dataclass
class MusaeGraph:
    """A parsed release, numpy only: ``edge_index (2, E)`` int64 (both directions, sorted,
    unique), features as CSR ``(indptr (N+1,), indices (nnz,))`` of a 0/1 matrix with
    ``num_features`` columns, ``y (N,)`` int64 and the class names."""

    edge_index: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    y: np.ndarray
    class_names: list[str]
    num_features: int

    @property
    def num_nodes(self) -> int:
        return int(self.y.size)

    @property
    def num_undirected_edges(self) -> int:
        """Undirected edges: pairs ``i < j`` plus self-loops."""
        src, dst = self.edge_index
        return int((src < dst).sum() + (src == dst).sum())

    def to_data(self, split_seed: int = 0,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)):
        """The graph as a PyG ``Data`` (see the module docstring) with the split of
        ``split_seed``."""
        import torch
        from torch_geometric.data import Data

        from bingnn.models._node import sparse_csr

        n = self.num_nodes
        x = sparse_csr(torch.from_numpy(self.indptr), torch.from_numpy(self.indices),
                       torch.ones(self.indices.size, dtype=torch.float32),
                       (n, self.num_features))
        data = Data(x=x, edge_index=torch.from_numpy(self.edge_index),
                    y=torch.from_numpy(self.y), num_nodes=n)
        data.class_names = list(self.class_names)
        for name, idx in zip(("train", "val", "test"),
                             stratified_split(self.y, split_seed, fractions), strict=True):
            mask = torch.zeros(n, dtype=torch.bool)
            mask[torch.from_numpy(idx)] = True
            data[f"{name}_mask"] = mask
        return data


# ------------------------------------------------------------------------------------ reading


def _remedy(spec: MusaeSpec) -> str:
    return (f"download it again (download=True, --download) or point raw_dir (--raw-dir) at "
            f"a complete copy of the {spec.title} release")


def _read_text(path: Path, spec: MusaeSpec) -> str:
    data = path.read_bytes()
    if data.startswith(_LFS_HEADER):
        raise ValueError(f"{path} is a Git LFS pointer, not the data (a clone without "
                         f"'git lfs pull'); {_remedy(spec)}")
    if not data.strip():
        raise ValueError(f"{path} is empty; {_remedy(spec)}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); {_remedy(spec)}") from e


def find_musae_files(folder: str | os.PathLike, spec: str | MusaeSpec) -> dict[str, Path]:
    """The edges, target and features files of ``spec`` in ``folder`` (first matching stem).

    Raises:
        ValueError: a file is missing.
    """
    spec = musae_spec(spec)
    folder = Path(folder)
    found, missing = {}, []
    for kind in ("edges", "target", "features"):
        names = spec.candidates(kind)
        hit = next((folder / n for n in names if (folder / n).is_file()), None)
        if hit is None:
            missing.append(" or ".join(names))
        else:
            found[kind] = hit
    if missing:
        raise ValueError(f"{folder} lacks the {spec.title} file(s) {'; '.join(missing)}: pass "
                         "raw_dir (--raw-dir) the folder holding the release files, or "
                         "download=True (--download)")
    return found


def _parse_int(text: str, path: Path, line: int, what: str, spec: MusaeSpec) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: {what} {text!r} is not an integer (damaged "
                         f"or truncated file); {_remedy(spec)}") from None


def _read_edges(path: Path, num_nodes: int, spec: MusaeSpec) -> np.ndarray:
    text = _read_text(path, spec)
    head, _, body = text.partition("\n")
    header = [h.strip() for h in head.split(",")]
    if len(header) != 2 or any(h.lstrip("-").isdigit() for h in header):
        raise ValueError(f"{path}: expected a header of two column names (id_1,id_2), got "
                         f"{head!r}; {_remedy(spec)}")
    try:  # numpy's C parser; the line-by-line pass below only runs to name a bad line
        pairs = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, ndmin=2)
        ok = pairs.shape[1] == 2 or pairs.size == 0
    except ValueError:
        ok = False
    if not ok:
        _explain_bad_edge_line(path, body, spec)
    pairs = pairs.reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_nodes):
        bad = int(pairs.min()) if pairs.min() < 0 else int(pairs.max())
        raise ValueError(f"{path}: node id {bad} is outside the {num_nodes:,} nodes of the "
                         f"target file; {_remedy(spec)}")
    return pairs


def _explain_bad_edge_line(path: Path, body: str, spec: MusaeSpec) -> None:
    for i, row in enumerate(body.splitlines(), start=2):
        if not row.strip():
            continue
        a, sep, b = row.partition(",")
        if not sep or "," in b:
            raise ValueError(f"{path}, line {i}: expected two node ids, got {row!r} (damaged "
                             f"or truncated file); {_remedy(spec)}")
        _parse_int(a.strip(), path, i, "node id", spec)
        _parse_int(b.strip(), path, i, "node id", spec)
    raise ValueError(f"{path}: could not read the edge list; {_remedy(spec)}")


def _undirected(pairs: np.ndarray) -> np.ndarray:
    """Both directions of every edge, duplicates removed, sorted by (source, target)."""
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = np.unique(both, axis=0) if both.size else both.reshape(0, 2)
    return np.ascontiguousarray(both.T)


def _labels(raw: list[str], path: Path, spec: MusaeSpec) -> tuple[np.ndarray, list[str]]:
    if spec.label_bins > 0:
        try:
            v = np.array([float(t) for t in raw])
        except ValueError as e:
            raise ValueError(f"{path}: column {spec.label_column!r} must hold numbers ({e}); "
                             f"{_remedy(spec)}") from None
        edges = np.quantile(v, np.linspace(0, 1, spec.label_bins + 1)[1:-1])
        y = np.searchsorted(edges, v, side="right").astype(np.int64)
        bounds = [-np.inf, *edges.tolist(), np.inf]
        names = [f"[{bounds[i]:g}, {bounds[i + 1]:g})" for i in range(spec.label_bins)]
        return y, names
    distinct = sorted(set(raw))
    with contextlib.suppress(ValueError):
        distinct = sorted(distinct, key=int)
    index = {c: i for i, c in enumerate(distinct)}
    return np.array([index[t] for t in raw], dtype=np.int64), distinct


def _read_target(path: Path, spec: MusaeSpec) -> tuple[np.ndarray, list[str]]:
    reader = csv.DictReader(io.StringIO(_read_text(path, spec), newline=""))
    cols = reader.fieldnames or []
    missing = [c for c in (spec.id_column, spec.label_column) if c not in cols]
    if missing:
        raise ValueError(f"{path}: no column {missing} in the header {cols}; "
                         f"{_remedy(spec)}")
    ids, raw = [], []
    for i, row in enumerate(reader, start=2):
        node, label = row.get(spec.id_column), row.get(spec.label_column)
        if node is None or label is None or None in row:
            raise ValueError(f"{path}, line {i}: {len(cols)} columns expected (damaged or "
                             f"truncated file); {_remedy(spec)}")
        ids.append(_parse_int(node.strip(), path, i, spec.id_column, spec))
        raw.append(label.strip())
    if not ids:
        raise ValueError(f"{path} has a header but no nodes; {_remedy(spec)}")
    ids_arr = np.array(ids, dtype=np.int64)
    n = ids_arr.size
    if ids_arr.min() < 0 or ids_arr.max() >= n or np.unique(ids_arr).size != n:
        raise ValueError(f"{path}: the {n:,} node ids of column {spec.id_column!r} are not "
                         f"0..{n - 1} each once (damaged or truncated file); {_remedy(spec)}")
    y_rows, names = _labels(raw, path, spec)
    y = np.empty(n, dtype=np.int64)
    y[ids_arr] = y_rows
    return y, names


def _read_features(path: Path, num_nodes: int, spec: MusaeSpec
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    try:
        table = json.loads(_read_text(path, spec))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}; truncated download?); "
                         f"{_remedy(spec)}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected an object {{\"node id\": [feature ids]}}, got "
                         f"{type(table).__name__}; {_remedy(spec)}")
    nodes, lengths, flat = [], [], []
    for key, feats in table.items():
        node = int(key) if key.isdigit() else -1
        if not 0 <= node < num_nodes:
            raise ValueError(f"{path}: key {key!r} is not one of the {num_nodes:,} node ids of "
                             f"the target file; {_remedy(spec)}")
        if not isinstance(feats, list):
            raise ValueError(f"{path}: node {node} has {feats!r}, expected a list of feature "
                             f"ids; {_remedy(spec)}")
        nodes.append(node)
        lengths.append(len(feats))
        flat.extend(feats)
    try:
        cols = np.array(flat)
    except (ValueError, TypeError):  # nested or ragged entries
        cols = np.array([None])
    if cols.size and (cols.ndim != 1 or cols.dtype.kind not in "iu" or cols.min() < 0):
        raise ValueError(f"{path}: feature ids must be non-negative integers; {_remedy(spec)}")
    cols = cols.astype(np.int64)
    width = int(cols.max()) + 1 if cols.size else 0
    rows = np.repeat(np.array(nodes, dtype=np.int64), lengths)
    # one (node, feature) key per stored one, sorted and unique: CSR order, duplicates dropped
    keys = np.unique(rows * max(width, 1) + cols)
    rows, cols = np.divmod(keys, max(width, 1))
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_nodes), out=indptr[1:])
    return indptr, cols, width


def _check_size(what: str, got: int, expected: int | None, path: Path, spec: MusaeSpec) -> None:
    if expected is not None and got != expected:
        raise ValueError(f"{path}: {got:,} {what}, but the {spec.title} release has "
                         f"{expected:,}: the file is truncated or from another release; "
                         f"{_remedy(spec)}")


def read_musae(folder: str | os.PathLike, spec: str | MusaeSpec) -> MusaeGraph:
    """Parse the release files of ``spec`` in ``folder`` (no cache; see :func:`load_musae`).

    Raises:
        ValueError: a file is missing or damaged (module docstring).
    """
    spec = musae_spec(spec)
    files = find_musae_files(folder, spec)
    y, names = _read_target(files["target"], spec)
    n = y.size
    _check_size("nodes", n, spec.num_nodes, files["target"], spec)
    _check_size("classes", len(names), spec.num_classes, files["target"], spec)
    edge_index = _undirected(_read_edges(files["edges"], n, spec))
    graph = MusaeGraph(edge_index, np.zeros(n + 1, np.int64), np.zeros(0, np.int64), y, names, 0)
    _check_size("undirected edges", graph.num_undirected_edges, spec.num_edges,
                files["edges"], spec)
    graph.indptr, graph.indices, graph.num_features = _read_features(files["features"], n, spec)
    _check_size("features", graph.num_features, spec.num_features, files["features"], spec)
    return graph


# ------------------------------------------------------------------------------------ caching


def _fingerprint(files: dict[str, Path]) -> str:
    h = hashlib.sha256(f"musae-cache-v{CACHE_VERSION}".encode())
    for kind in ("edges", "target", "features"):
        h.update(kind.encode())
        h.update(files[kind].read_bytes())
    return h.hexdigest()


def _save_cache(path: Path, graph: MusaeGraph, fingerprint: str) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, version=np.int64(CACHE_VERSION), fingerprint=np.array(fingerprint),
                 edge_index=graph.edge_index, indptr=graph.indptr, indices=graph.indices,
                 y=graph.y, class_names=np.array(graph.class_names, dtype=str),
                 num_features=np.int64(graph.num_features))


def _load_cache(path: Path, fingerprint: str | None) -> MusaeGraph | None:
    """The cached graph, or ``None`` if absent, stale (another fingerprint) or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            if fingerprint is not None and str(z["fingerprint"]) != fingerprint:
                return None
            return MusaeGraph(z["edge_index"], z["indptr"], z["indices"], z["y"],
                              [str(c) for c in z["class_names"]], int(z["num_features"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


# ----------------------------------------------------------------------------------- download


def _fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``dest`` (atomic: a temporary file renamed at the end)."""
    from tqdm.auto import tqdm

    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        total = resp.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  desc=dest.name, disable=not progress) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _unpack(archive: Path, url: str, spec: MusaeSpec, dest: Path) -> None:
    """Copy the three release files out of a zip archive into ``dest`` by their base names
    (nothing else is extracted, so no member can land outside ``dest``)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            by_name: dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                if not info.is_dir():
                    by_name.setdefault(info.filename.replace("\\", "/").rsplit("/", 1)[-1], info)
            for kind in ("edges", "target", "features"):
                names = spec.candidates(kind)
                info = next((by_name[n] for n in names if n in by_name), None)
                if info is None:
                    raise ValueError(f"the archive from {url} holds no {' or '.join(names)}: "
                                     f"not the {spec.title} release")
                with zf.open(info) as src, open(dest / Path(info.filename).name, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{url} is not a valid zip archive ({e}); pass url= the release's "
                         ".zip or a folder URL ending in '/'") from None


def download_musae(name: str | MusaeSpec, root: str | os.PathLike, url: str | None = None,
                   *, progress: bool = True) -> Path:
    """Download a release into ``<root>/<name>/raw`` and return that folder.

    ``url`` (default: the spec's, SNAP's archive) is either a zip archive holding the three
    files at any depth, or a folder URL ending in ``/`` under which they lie side by side
    (for example the authors' GitHub repository); ``http(s)://`` and ``file://`` both work.
    The files are fetched into a temporary folder, parsed in full, and only then moved into
    ``raw/``, so an interrupted or damaged download never replaces good files.

    Raises:
        OSError: the URL cannot be fetched.
        ValueError: what was fetched is not a complete, valid release.
    """
    spec = musae_spec(name)
    url = url or spec.url
    if not url:
        raise ValueError(f"{spec.title} has no download URL; pass url= or raw_dir=")
    base = Path(root) / spec.name
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=base))
    try:
        try:
            if url.endswith("/"):
                _fetch_folder(url, spec, work, progress)
            else:
                archive = work / "release.zip"
                _fetch(url, archive, progress)
                _unpack(archive, url, spec, work)
                archive.unlink()
        except OSError as e:  # URLError is an OSError
            raise OSError(f"could not download {spec.title} from {url} ({e}); pass url= a "
                          "mirror (a file:// path works), or raw_dir= a folder with the "
                          "release files") from e
        files = find_musae_files(work, spec)
        read_musae(work, spec)  # complete and valid before it replaces anything
        raw = base / "raw"
        raw.mkdir(exist_ok=True)
        for path in files.values():
            os.replace(path, raw / path.name)
        return raw
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_folder(url: str, spec: MusaeSpec, dest: Path, progress: bool) -> None:
    for kind in ("edges", "target", "features"):
        errors = []
        for name in spec.candidates(kind):
            try:
                _fetch(url + name, dest / name, progress)
                break
            except OSError as e:
                errors.append(f"{name}: {e}")
        else:
            raise OSError("; ".join(errors))


# ------------------------------------------------------------------------------------ loading


def _copy_in(src: Path, raw: Path, spec: MusaeSpec) -> None:
    """Copy the release files found in ``src`` into ``raw`` (unless they are already there)."""
    raw.mkdir(parents=True, exist_ok=True)
    for path in find_musae_files(src, spec).values():
        target = raw / path.name
        if target.is_file() and target.stat().st_size == path.stat().st_size and \
                target.read_bytes() == path.read_bytes():
            continue
        with atomic_open(target, "wb") as out, open(path, "rb") as f:
            shutil.copyfileobj(f, out)


def load_musae(
    name: str | MusaeSpec,
    root: str | os.PathLike,
    raw_dir: str | os.PathLike | None = None,
    download: bool = False,
    url: str | None = None,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    progress: bool = True,
):
    """Load a MUSAE-format graph as a PyG ``Data`` (module docstring: sparse ``x``,
    undirected ``edge_index``, ``y``, ``class_names`` and the split of ``split_seed``).

    Args:
        name: a key of :data:`MUSAE` (``"facebook"``, ...) or a :class:`MusaeSpec`.
        root: data root; raw files in ``<root>/<name>/raw``, the cache in
            ``<root>/<name>/processed``.
        raw_dir: folder holding the release files (either stem); they are copied into
            ``<root>/<name>/raw`` (offline use).
        download: fetch the release when its raw files are missing (needs internet, or a
            ``file://`` ``url``).
        url: download location (default: the spec's); see :func:`download_musae`.
        split_seed: seed of the stratified split.
        fractions: training / validation / test fractions of every class.
        progress: show a download progress bar.

    Raises:
        ValueError: unknown name; raw files missing (and ``download`` off) or damaged.
        OSError: the download failed.
    """
    spec = musae_spec(name)
    base = Path(root) / spec.name
    raw, cache = base / "raw", base / "processed" / "graph.npz"
    if raw_dir is not None:
        _copy_in(Path(raw_dir), raw, spec)
    try:
        files = find_musae_files(raw, spec)
    except ValueError:
        # no raw files: a cache (raw files deleted after processing) still serves
        graph = _load_cache(cache, None) if cache.is_file() else None
        if graph is not None:
            return graph.to_data(split_seed, fractions)
        if not download:
            raise ValueError(
                f"{spec.title} is not in {raw}: pass raw_dir (--raw-dir) the folder with the "
                f"release files ({' or '.join(spec.candidates('edges'))}, ...), or "
                "download=True (--download)") from None
        download_musae(spec, root, url, progress=progress)
        files = find_musae_files(raw, spec)
    fingerprint = _fingerprint(files)
    graph = _load_cache(cache, fingerprint) if cache.is_file() else None
    if graph is None:
        graph = read_musae(raw, spec)
        _save_cache(cache, graph, fingerprint)
    return graph.to_data(split_seed, fractions)
