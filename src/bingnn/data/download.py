"""Downloading dataset archives: streamed to a temporary file renamed into place, zip members
checked before extraction, and errors that say how to use a mirror."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from bingnn.utils.atomic import atomic_open

__all__ = ["download_error", "fetch", "local_path", "resolve_url", "safe_extract"]


def resolve_url(url: str | None, env: str, default: str) -> str:
    """``url`` if given, else the environment variable ``env`` if set, else ``default``."""
    return url or os.environ.get(env) or default


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL names (``None`` for other schemes)."""
    parts = urllib.parse.urlparse(url)
    if parts.scheme != "file":
        return None
    return Path(urllib.request.url2pathname(parts.path))


def fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, then rename it (atomic)."""
    from tqdm.auto import tqdm

    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        total = resp.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            disable=not progress,
        ) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def download_error(label: str, url: str, env: str, zip_name: str, e: BaseException) -> OSError:
    """The one-line error of a failed download: what failed and the two ways around it, which
    work from the command line (the environment variable) as from Python (``url=``)."""
    return OSError(
        f"could not download {label} from {url} ({e}); use a mirror: set {env}=<url> (or "
        f"pass url= in Python), or download {zip_name} yourself and set "
        f"{env}=file:///path/to/{zip_name}"
    )


def safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract, refusing members that would land outside ``dest`` (``..``, absolute paths,
    drive letters) and symbolic links."""
    base = dest.resolve()
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        target = (base / name).resolve()
        mode = info.external_attr >> 16
        if (
            name.startswith("/")
            or ":" in name.split("/")[0]
            or (target != base and base not in target.parents)
        ):
            raise ValueError(f"refusing to extract {info.filename!r}: path leaves {dest}")
        if (mode & 0o170000) == 0o120000:
            raise ValueError(f"refusing to extract {info.filename!r}: symbolic link")
    zf.extractall(base)
