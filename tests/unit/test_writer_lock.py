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
    a, b = WriterLock(str(path)), WriterLock(str(path))
    yield a, b
    a.close()
    b.close()


async def test_a_second_writer_waits_for_the_first(
    path: Path, locks: tuple[WriterLock, WriterLock]
) -> None:
    first, second = locks
    await first.acquire()
    assert os.stat(path).st_mode & 0o777 == 0o600  # as private as the database
    waiting = asyncio.ensure_future(second.acquire())
    await asyncio.sleep(0)  # one loop turn: it is now blocked in its thread
    assert not waiting.done() and held_elsewhere(path)
    first.release()
    first.release()  # a second release does nothing (the group commit may call it twice)
    await waiting  # woken by the release, without polling
    assert held_elsewhere(path)
    second.release()
    assert not held_elsewhere(path)


async def test_a_writer_cancelled_while_waiting_gives_the_lock_back(
    path: Path, locks: tuple[WriterLock, WriterLock]
) -> None:
    first, second = locks
    await first.acquire()
    waiting = asyncio.ensure_future(second.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    first.release()  # the blocked flock gets the lock, then gives it back
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not held_elsewhere(path)
    await first.acquire()  # free for the next writer
    assert held_elsewhere(path)
    first.release()
