"""Local spaces: every directory a write adds an entry to is fsynced before
the write is called durable, also when another writer made it; and a
streamed writer holds no more descriptors than its file and its directory
(found by review, 2026-12-06, eighth session)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from jointcloud.spaces.local import SYNCFS_AT, LocalSpace


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(device, inode) of every file or directory fsynced from now on."""
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def _ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_put_into_directories_another_writer_made_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed writer made ``a/b/c`` and fsynced the entries of ``a``, ``b``
    and ``c`` only at its commit. A put into ``a/b/c`` meanwhile fsynced its
    file and ``c`` and returned, durable in name only: the entries making
    the path to it were on no disk, and never were once the writer aborted."""
    space = LocalSpace(tmp_path)
    synced = _fsyncs(monkeypatch)
    writer = await space.open_writer("a/b/c/streamed")
    await space.put("a/b/c/small", b"durable")
    for d in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert _ident(d) in synced, d
    await writer.abort()
    await space.close()


async def test_a_directory_another_writer_just_made_is_fsynced_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers make ``a`` at once: the one whose mkdir found it made
    (EEXIST) did not fsync the root, and returned before the other did."""
    space = LocalSpace(tmp_path)
    synced = _fsyncs(monkeypatch)
    real = os.mkdir

    def made_meanwhile(path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real(path, mode, dir_fd=dir_fd)  # the other writer's mkdir
        raise FileExistsError(17, "File exists", path)

    monkeypatch.setattr(os, "mkdir", made_meanwhile)
    await space.put("a/k", b"durable")
    assert _ident(tmp_path) in synced
    await space.close()


async def test_an_open_writer_holds_its_file_and_its_directory_only(tmp_path: Path) -> None:
    """Each directory a writer made was held open until its commit, to be
    fsynced then: five descriptors for a key three new directories deep,
    where a whole connection is budgeted four (api/common/admission.py)."""
    space = LocalSpace(tmp_path)
    await space.put("warm", b"x")  # the space's threads and held root
    before = _open_fds()
    writer = await space.open_writer("a/b/c/streamed")
    assert _open_fds() - before == 2
    await writer.write(b"x" * 100)
    await writer.commit()
    assert _open_fds() == before
    assert (tmp_path / "a/b/c/streamed").read_bytes() == b"x" * 100
    await space.close()


async def test_a_batch_that_ends_with_syncfs_fsyncs_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its directories made are synced by its one ``syncfs`` (they lie on the
    file system of the directory they were made in), not one by one."""
    space = LocalSpace(tmp_path)
    synced = _fsyncs(monkeypatch)
    items = [(f"n{i % 3}/m/k{i}", b"v") for i in range(SYNCFS_AT)]
    await space.put_many(items)
    assert synced == []
    assert all((tmp_path / k).read_bytes() == b"v" for k, _ in items)
    await space.close()


async def test_a_small_batch_fsyncs_each_directory_that_gained_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = LocalSpace(tmp_path)
    synced = _fsyncs(monkeypatch)
    await space.put_many([("x/y/z/k1", b"1"), ("x/w/k2", b"2")])
    for d in ("", "x", "x/y", "x/y/z", "x/w"):
        assert _ident(tmp_path / d) in synced, d
    await space.close()


class _Interleaved(dict[str, object]):
    """The space's writers by key, where the two worker threads that look a
    writer up (its commit, and the discard of that commit cancelled) both
    look before either takes it out (with the fix, one waits for the other's
    lock: the meeting times out and each goes on)."""

    def __init__(self) -> None:
        super().__init__()
        self.meet: threading.Barrier | None = None

    def get(self, key: str, default: object = None) -> object:
        found = super().get(key, default)
        if self.meet is not None and threading.current_thread().name.startswith("jcs-local"):
            with contextlib.suppress(threading.BrokenBarrierError):
                if self.meet.wait() == 1:
                    time.sleep(0.05)  # the other one takes it out first
        return found


async def test_a_commit_cancelled_as_it_ends_raises_the_cancellation(tmp_path: Path) -> None:
    space = LocalSpace(tmp_path)
    writing = _Interleaved()
    space._writing = writing  # type: ignore[assignment]
    writer = await space.open_writer("a/k")
    await writer.write(b"x")
    writing.meet = threading.Barrier(2, timeout=0.5)
    commit = asyncio.ensure_future(writer.commit())
    await asyncio.sleep(0.01)
    commit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await commit
    await asyncio.sleep(0.1)
    assert not writing
    await space.close()
