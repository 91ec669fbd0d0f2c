"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each writer writes to a temporary file in the destination folder, flushes it to disk, then
renames it over the destination (``os.replace`` is atomic on POSIX and Windows).

The temporary file is ``.<name>.<8 random characters>.tmp`` next to the destination, created
with mode ``0o666`` minus the process umask, so the finished file has the permissions any
other new file would have (``tempfile.mkstemp`` would make it ``0o600``).

While it writes, the writer holds an exclusive ``flock`` on its temporary file. A writer that
was killed (SIGKILL, power loss) leaves its temporary file behind but not its lock, so every
write first removes the temporary files of the same destination that nobody holds locked and
that have not changed for :data:`STALE_AFTER_S` seconds. Files of other destinations, files
that do not follow the pattern, and files of live writers are never touched. Where ``flock``
is unavailable or unsupported (Windows, some network file systems) nothing is removed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import stat
import string
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STALE_AFTER_S",
    "atomic_open",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temp_files",
]

#: A temporary file untouched for this long, and not locked, belongs to a dead writer. The
#: delay covers the instant between a writer creating its file and locking it.
STALE_AFTER_S = 10.0

# The random part: the characters tempfile.mkstemp uses, so files left by earlier versions of
# this module (which used mkstemp) are recognised too.
_RAND_CHARS = string.ascii_lowercase + string.digits + "_"


def _temp_pattern(dest: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(dest.name)}\.[{_RAND_CHARS}]{{8}}\.tmp")


def _lock(fd: int) -> bool:
    """Take a non-blocking exclusive lock on ``fd``; False if someone holds it or locks are not
    supported here."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left next to it.

    Only names of the form ``.<name>.<8 characters>.tmp`` are considered, and only those that
    no process holds locked and whose modification time is at least :data:`STALE_AFTER_S`
    seconds old. Returns the files removed.
    """
    dest = Path(path)
    if fcntl is None or not dest.parent.is_dir():
        return []
    pattern = _temp_pattern(dest)
    removed = []
    now = time.time()
    for cand in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        if not pattern.fullmatch(cand.name):
            continue
        try:
            fd = os.open(cand, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # gone meanwhile, a link, or not ours to read
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_AFTER_S:
                continue
            if _lock(fd):  # nobody writes it: its writer is dead
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(cand)
                removed.append(cand)
        finally:
            os.close(fd)
    return removed


def _create_temp(dest: Path) -> tuple[int, str]:
    """Create and lock ``.<name>.<random>.tmp`` next to ``dest``; returns (fd, path)."""
    if dest.is_dir():
        raise IsADirectoryError(f"{dest} is a folder; give a file name to write")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(dest)
    for _ in range(100):
        rand = "".join(secrets.choice(_RAND_CHARS) for _ in range(8))
        tmp = dest.parent / f".{dest.name}.{rand}.tmp"
        try:
            # 0o666: the kernel applies the umask, as for any other new file.
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        _lock(fd)  # best effort: without locks, stale files are simply never removed
        return fd, str(tmp)
    raise FileExistsError(f"could not create a temporary file next to {dest}")


def _publish_new(tmp: str, dest: Path) -> None:
    """Give the finished ``tmp`` the name ``dest`` only if no file has that name: a hard link
    fails atomically when ``dest`` exists (``os.replace`` would overwrite it). File systems
    without hard links fall back to a check just before the rename."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise FileExistsError(f"{dest} exists") from None
    except OSError:  # no hard links here (FAT, some network file systems)
        if os.path.lexists(dest):
            raise FileExistsError(f"{dest} exists") from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb",
                overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``.

    ``overwrite=False``: the finished file takes the name only if nothing has it by then;
    otherwise ``FileExistsError`` is raised and the temporary file removed."""
    if "w" not in mode:
        raise ValueError("atomic_open is for writing")
    dest = Path(path)
    fd, tmp = _create_temp(dest)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            # still locked: a concurrent cleaner leaves it alone
            if overwrite:
                os.replace(tmp, dest)
            else:
                _publish_new(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    with atomic_open(path, "wb", overwrite=overwrite) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)`` (for libraries that insist on a file name, such as
    ``torch.save`` or ``safetensors``), then move the result over ``path``."""
    dest = Path(path)
    fd, tmp = _create_temp(dest)  # fd holds the lock while the library writes by name
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:  # whatever file the library left under that name
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
