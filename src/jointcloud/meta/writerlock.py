"""One writing process at a time on a SQLite file, without polling.

Why: SQLite lets one transaction write at a time. A process whose ``BEGIN
IMMEDIATE`` meets another process's write lock gets ``SQLITE_BUSY``: its
busy handler sleeps and polls, on the event loop's thread (``sqlite.py``
keeps that wait short, and ``Database`` retries with ``asyncio.sleep``,
doubling the pause). Between the processes of ``jcs serve --workers`` that
would happen at nearly every group commit, and each lost poll is a pause
nobody writes in. So a process takes an ``flock(2)`` on ``<db>.writer``
before it begins a write group and gives it back once the group has
committed: a process that must wait sleeps in the kernel, in a worker
thread (the loop runs on, and its writers gather into the next group), and
is woken as soon as the lock is free. Any program that writes the file
through ``Database`` takes it; one that does not (the ``sqlite3`` shell)
still meets SQLite's own lock, which stays the guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os


class WriterLock:
    """An exclusive ``flock`` on ``path`` (created 0600 beside the database)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._held = False

    def _descriptor(self) -> int:
        if self._fd is None:
            # Not inherited by the processes this one starts (they would share
            # the lock), and private as the database, however it was left.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    async def acquire(self) -> None:
        """Take the lock: at once if it is free (no thread hop), else in a
        worker thread. Cancelled meanwhile, the lock is given back once the
        thread has it (a blocked ``flock`` cannot be called off)."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                await asyncio.wait([waiting])
                if not waiting.cancelled() and waiting.exception() is None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                raise
        self._held = True

    def release(self) -> None:
        """Give the lock back; a second call does nothing (the group commit
        gives it back before its sync, and again, in case, at its end)."""
        if self._held and self._fd is not None:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
