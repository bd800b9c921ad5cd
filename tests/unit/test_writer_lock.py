"""The lock among processes writing one SQLite file (``meta/writerlock.py``).
Two ``WriterLock`` objects on one path stand for two processes: ``flock``
locks belong to an open file, so they exclude each other as two processes'
would."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jointcloud.errors import MetadataUnavailable
from jointcloud.meta.writerlock import WriterLock


def held_elsewhere(path: Path) -> bool:
    """Whether another open file holds the lock (probed without waiting)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's lock, if it got it
    return False


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "meta.db.writer"


@pytest.fixture
def locks(path: Path) -> Iterator[tuple[WriterLock, WriterLock]]:
    database = path.with_suffix("")
    database.touch()
    a, b = (WriterLock(str(path), str(database), wait=60.0) for _ in range(2))
    yield a, b
    a.close()
    b.close()


async def until_free(path: Path) -> None:
    """Until no one holds the lock (a thread that got it hands it back)."""
    deadline = asyncio.get_running_loop().time() + 10
    while held_elsewhere(path):
        assert asyncio.get_running_loop().time() < deadline, "the lock was never given back"
        await asyncio.sleep(0.01)


async def test_a_second_writer_waits_for_the_first(
    path: Path, locks: tuple[WriterLock, WriterLock]
) -> None:
    first, second = locks
    taking = await first.acquire()
    assert os.stat(path).st_mode & 0o777 == 0o600  # as private as the database
    waiting = asyncio.ensure_future(second.acquire())
    await asyncio.sleep(0)  # one loop turn: it is now blocked in its thread
    assert not waiting.done() and held_elsewhere(path)
    first.release(taking)
    first.release(taking)  # a second release does nothing (the group commit may call it twice)
    theirs = await waiting  # woken by the release, without polling
    assert held_elsewhere(path)
    second.release(theirs)
    assert not held_elsewhere(path)


async def test_a_late_release_never_ends_a_later_taking(
    path: Path, locks: tuple[WriterLock, WriterLock]
) -> None:
    first, _ = locks
    old = await first.acquire()
    first.release(old)
    new = await first.acquire()
    first.release(old)  # a group's late release (its commit's thread), after the next began
    assert held_elsewhere(path)
    first.release(new)
    assert not held_elsewhere(path)


async def test_a_writer_cancelled_while_waiting_gives_the_lock_back(
    path: Path, locks: tuple[WriterLock, WriterLock]
) -> None:
    first, second = locks
    taking = await first.acquire()
    waiting = asyncio.ensure_future(second.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting  # at once: the thread is left blocked
    first.release(taking)  # the blocked flock gets the lock, then gives it back
    await until_free(path)
    taking = await first.acquire()  # free for the next writer
    assert held_elsewhere(path)
    first.release(taking)


async def test_a_holder_that_never_lets_go_fails_the_wait(path: Path) -> None:
    """A stopped process holding the lock fails the writes behind it after
    the bound (as SQLite's busy wait did) instead of hanging them."""
    database = path.with_suffix("")
    database.touch()
    holder = WriterLock(str(path), str(database), wait=60.0)
    impatient = WriterLock(str(path), str(database), wait=0.2)
    try:
        taking = await holder.acquire()
        with pytest.raises(MetadataUnavailable, match="locked by another process"):
            await impatient.acquire()
        holder.release(taking)
        await until_free(path)  # the abandoned wait got it and gave it back
    finally:
        holder.close()
        impatient.close()
