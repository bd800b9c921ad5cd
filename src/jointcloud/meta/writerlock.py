"""One writing process at a time on a SQLite file, without polling.

Why: SQLite lets one transaction write at a time. A process whose ``BEGIN
IMMEDIATE`` meets another process's write lock gets ``SQLITE_BUSY``: its
busy handler sleeps and polls, on the event loop's thread (``sqlite.py``
keeps that wait short, and ``Database`` retries with ``asyncio.sleep``,
doubling the pause). Between the processes of ``jcs serve --workers`` that
would happen at nearly every group commit, and each lost poll is a pause
nobody writes in. So a process takes an ``flock(2)`` on ``<db>.writer``
before it begins a write group (or a migration) and gives it back once the
group has committed: a process that must wait sleeps in the kernel, in a
worker thread (the loop runs on, and its writers gather into the next
group), and is woken as soon as the lock is free. Any program that writes
the file through ``Database`` takes it; one that does not (the ``sqlite3``
shell) still meets SQLite's own lock, which stays the guarantee.

A wait is bounded, as SQLite's busy wait was: a holder that never lets go
(a stopped process) fails the writes behind it instead of hanging them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from jointcloud.errors import MetadataOutOfReach


def locked_too_long(seconds: float) -> MetadataOutOfReach:
    """A write that waited ``seconds`` for another process's lock, by this
    one or by SQLite's own (a program not going through ``Database``)."""
    return MetadataOutOfReach(
        f"the metadata database stayed locked by another process for {seconds:.0f} s"
    )


class WriterLock:
    """An exclusive ``flock`` on ``path``, created beside the database and
    as private as it (0600, the database file's owner)."""

    def __init__(self, path: str, database: str, wait: float) -> None:
        self.path = path
        self.database = database
        self.wait = wait
        self._fd: int | None = None
        # Released from the commit's worker thread, taken on the loop's: a
        # release names the taking it ends (a late one never ends the next).
        self._state = threading.Lock()
        self._taken = 0  # takings so far
        self._held = False

    def _descriptor(self) -> int:
        if self._fd is None:
            # O_CLOEXEC: the processes this one starts must not share the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _make_private(fd, self.database)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    async def acquire(self) -> int:
        """Take the lock: at once if it is free (no thread hop), else in a
        worker thread, for up to ``wait`` seconds. Returns the taking, for
        ``release``. A wait given up (cancelled, timed out) leaves the
        thread to finish: if it gets the lock, it gives it back."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
            try:
                # Not ``wait_for(shield(...))``: it can swallow a
                # cancellation on Python 3.11 (CPython gh-86296).
                done, _ = await asyncio.wait([waiting], timeout=self.wait)
                if not done:
                    raise locked_too_long(self.wait)
                waiting.result()
            except BaseException:
                waiting.add_done_callback(self._abandoned)
                raise
        with self._state:
            self._taken += 1
            self._held = True
            return self._taken

    def release(self, taking: int) -> None:
        """End ``taking``; a second call, or one for an older taking, does
        nothing (the group commit gives the lock back before its sync, and
        again, in case, at its end)."""
        with self._state:
            if not self._held or taking != self._taken or self._fd is None:
                return
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def holding(self, taking: int) -> Iterator[None]:
        """Releases ``taking`` when the block ends."""
        try:
            yield
        finally:
            self.release(taking)

    def _abandoned(self, waiting: asyncio.Future[None]) -> None:
        """A wait given up got the lock after all: give it back, unless a
        later taking holds it now (on this same file, ``flock`` is then
        already theirs)."""
        if waiting.cancelled() or waiting.exception() is not None:
            return
        with self._state:
            if not self._held and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _make_private(fd: int, database: str) -> None:
    """0600, owned as the database: run as root (``sudo jcs admin ...``)
    before the server ever wrote, the file would be root's and the server
    could not open it (SQLite gives its own ``-wal`` and ``-shm`` files the
    database's owner for the same reason)."""
    if os.geteuid() == 0:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(database)
            os.fchown(fd, st.st_uid, st.st_gid)
    try:
        os.fchmod(fd, 0o600)
    except PermissionError:
        if os.fstat(fd).st_mode & 0o077:  # not ours to tighten, and loose
            raise
