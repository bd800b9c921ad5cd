"""spaces/hotreads.py: which roots allow reads on the loop, how files are
opened there, and the recent keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jointcloud.spaces.hotreads import HotRoot, RecentKeys, read_nowait


def _hot_root(path: Path) -> HotRoot:
    hot = HotRoot.open(path)
    if hot is None:
        pytest.skip(f"{path} is not on a local disk file system with openat2")
    return hot


def test_files_below_the_root_open_and_links_or_escapes_do_not(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "blocks").mkdir(parents=True)
    (root / "blocks" / "k").write_bytes(b"inside")
    (tmp_path / "outside").write_bytes(b"not yours")
    (root / "blocks" / "out").symlink_to(tmp_path / "outside")
    (root / "blocks" / "in").symlink_to(root / "blocks" / "k")  # even one that stays inside
    (root / "linkdir").symlink_to(root / "blocks")
    hot = _hot_root(root)
    try:
        fd = hot.open_file("blocks/k")
        assert fd is not None
        try:
            assert os.pread(fd, 6, 0) == b"inside"
        finally:
            os.close(fd)
        for key in (
            "blocks/out",
            "blocks/in",
            "linkdir/k",
            "../outside",
            str(tmp_path / "outside"),
        ):
            assert hot.open_file(key) is None, key
        assert hot.open_file("blocks/missing") is None
    finally:
        hot.close()
    assert hot.open_file("blocks/k") is None  # closed: nothing more


def test_a_root_on_tmpfs_is_not_read_on_the_loop() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm here")
    assert HotRoot.open(shm) is None


def test_recent_keys_keep_the_last_ones_used() -> None:
    recent = RecentKeys(limit=3)
    for key in ("a", "b", "c"):
        recent.add(key)
    recent.add("a")  # used again: now the newest
    recent.add("d")  # over the limit: the oldest ("b") goes
    assert [k in recent for k in ("a", "b", "c", "d")] == [True, False, True, True]
    recent.discard("c")
    recent.discard("never there")
    assert len(recent) == 2 and "c" not in recent


def test_read_nowait_returns_all_or_nothing(tmp_path: Path) -> None:
    _hot_root(tmp_path).close()  # a file system that honours RWF_NOWAIT
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"0123456789")
        os.fsync(fd)  # clean pages, which the kernel may drop
        assert read_nowait(fd, 2, 3) == b"234"  # just written: cached
        assert read_nowait(fd, 8, 5) is None  # past the end: short
        assert read_nowait(fd, -1, 3) is None
        assert read_nowait(fd, 0, -1) is None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert read_nowait(fd, 2, 3) is None
    finally:
        os.close(fd)
