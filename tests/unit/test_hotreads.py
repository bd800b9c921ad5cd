"""spaces/hotreads.py: which roots allow reads on the loop, how files are
opened there, and the recent keys."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jointcloud.spaces.hotreads import HotRoot, RecentKeys, file_system_type, read_nowait
from jointcloud.spaces.local import LocalSpace
from support.hotreads import TMPFS, expects_loop_reads, require_loop_reads
from support.hotreads import file_system_type as stat_type


def _hot_root(path: Path) -> HotRoot:
    require_loop_reads(path)
    hot = HotRoot.open(path)
    assert hot is not None, "a local disk file system, yet no reads on the loop"
    return hot


def test_a_root_qualifies_exactly_when_stat_says_it_is_a_local_disk(tmp_path: Path) -> None:
    hot = HotRoot.open(tmp_path)
    assert (hot is not None) == expects_loop_reads(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert file_system_type(fd) in (None, stat_type(tmp_path))
    finally:
        os.close(fd)
    if hot is not None:
        hot.close()


def test_a_root_on_tmpfs_is_not_read_on_the_loop() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or stat_type(shm) != TMPFS:
        pytest.skip("no tmpfs at /dev/shm here")
    assert HotRoot.open(shm) is None


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
            "blocks/k\0junk",
            "blocks/missing",
        ):
            assert hot.open_file(key) is None, key
        assert hot.same_as(root)
        root.rename(tmp_path / "moved")
        assert not hot.same_as(root)  # gone
        root.mkdir()
        assert not hot.same_as(root)  # another directory at the path
    finally:
        hot.close()
    assert hot.open_file("blocks/k") is None  # closed: nothing more


async def test_a_read_on_the_loop_leaves_the_access_time_alone(tmp_path: Path) -> None:
    """The first read of a new block would set its access time (relatime):
    a journal write, which may wait. O_NOATIME."""
    require_loop_reads(tmp_path)
    if os.statvfs(tmp_path).f_flag & os.ST_NOATIME:
        pytest.skip("mounted noatime: no access time to keep")
    space = LocalSpace(tmp_path)
    await space.put("blocks/ab/k", b"x" * 4096)
    path = tmp_path / "blocks" / "ab" / "k"
    old = time.time() - 2 * 86400
    os.utime(path, (old, path.stat().st_mtime))
    assert space.read_cached("blocks/ab/k", 0, 4096) == b"x" * 4096
    assert path.stat().st_atime == pytest.approx(old)


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
    require_loop_reads(tmp_path)  # a file system that honours RWF_NOWAIT
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
