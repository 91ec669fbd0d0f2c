"""Atomic writes: permissions follow the umask, killed writers' temporary files are cleaned,
live writers' are not, and nothing else is ever touched."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bingnn
from bingnn.utils import atomic
from bingnn.utils.atomic import (
    atomic_open,
    atomic_save,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
)

needs_flock = pytest.mark.skipif(atomic.fcntl is None, reason="no flock on this platform")


def _write_by_name(path: str) -> None:
    with open(path, "wb") as f:  # what torch.save / safetensors do with the name they get
        f.write(b"payload")


WRITERS = {
    "bytes": lambda p: atomic_write_bytes(p, b"x"),
    "text": lambda p: atomic_write_text(p, "x"),
    "save": lambda p: atomic_save(p, _write_by_name),
}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_new_files_follow_the_umask(tmp_path: Path, umask: int, kind: str) -> None:
    old = os.umask(umask)
    try:
        out = tmp_path / "out.bin"
        WRITERS[kind](out)
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"")  # what any other program would create
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "ck.pt"
    out.write_bytes(b"old")

    def broken(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save(out, broken)
    with pytest.raises(RuntimeError), atomic_open(out) as f:
        f.write(b"half")
        raise RuntimeError("disk full")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


@pytest.mark.parametrize("links", [True, False])
def test_no_overwrite_keeps_an_existing_file(tmp_path: Path, monkeypatch, links: bool) -> None:
    """``overwrite=False`` publishes only under a free name, with or without hard links (a file
    that appears while the data is written is kept)."""
    if not links:
        def no_link(src, dst):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(atomic.os, "link", no_link)
    out = tmp_path / "m.bgnn"
    atomic_write_bytes(out, b"first", overwrite=False)
    assert out.read_bytes() == b"first"
    with pytest.raises(FileExistsError, match="m.bgnn exists"):
        atomic_write_bytes(out, b"second", overwrite=False)
    with pytest.raises(FileExistsError), atomic_open(out, overwrite=False) as f:
        f.write(b"third")
        out.unlink()
        out.write_bytes(b"appeared meanwhile")
    assert out.read_bytes() == b"appeared meanwhile"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(tmp_path / "dangling", b"x", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "m.bgnn"]
    atomic_write_bytes(out, b"forced")
    assert out.read_bytes() == b"forced"


def test_writing_over_a_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match=r"d is a folder; give a file name"):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


_HANGING_WRITER = """
import sys, time
from bingnn.utils.atomic import atomic_save

def writer(tmp):
    with open(tmp, "wb") as f:
        f.write(b"half a checkpoint")
    print(tmp, flush=True)
    time.sleep(120)

atomic_save(sys.argv[1], writer)
"""


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@needs_flock
def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(bingnn.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen([sys.executable, "-c", _HANGING_WRITER, str(target)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.parent == tmp_path and tmp.name.startswith(".checkpoint.pt.")
        _age(tmp, 3600)
        # The writer is alive (it holds its lock): however old its file, it stays.
        atomic_write_bytes(target, b"one")
        assert tmp.exists()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert tmp.exists()  # SIGKILL: nothing cleaned up after itself
    # Files that are not the dead writer's temp file of this target, all old and unlocked.
    keep = [
        tmp_path / ".other.pt.abcdefgh.tmp",  # another target
        tmp_path / ".checkpoint.pt.abcdefghi.tmp",  # not our name pattern
        tmp_path / ".checkpoint.pt.abcdefgh.tmp.bak",
        tmp_path / "checkpoint.pt.abcdefgh.tmp",
    ]
    for p in keep:
        p.write_bytes(b"not ours")
        _age(p, 3600)
    linked = tmp_path / ".checkpoint.pt.linklink.tmp"  # a link with our pattern: not followed
    linked.symlink_to(keep[0])
    recent = tmp_path / ".checkpoint.pt.justmade.tmp"  # a writer that has not locked it yet
    recent.write_bytes(b"")
    atomic_write_bytes(target, b"two")
    assert not tmp.exists()
    assert target.read_bytes() == b"two"
    assert all(p.exists() for p in [*keep, linked, recent])
    assert keep[0].read_bytes() == b"not ours"


@needs_flock
def test_remove_stale_temp_files_reports_what_it_removed(tmp_path: Path) -> None:
    target = tmp_path / "a[1].json"  # glob metacharacters in the name
    stale = tmp_path / ".a[1].json.x_y1z2w3.tmp"
    stale.write_bytes(b"")
    _age(stale, atomic.STALE_AFTER_S + 1)
    assert remove_stale_temp_files(tmp_path / "a.json") == []
    assert remove_stale_temp_files(target) == [stale]
    assert not stale.exists()
    assert remove_stale_temp_files(tmp_path / "missing" / "x") == []
