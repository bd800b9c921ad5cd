"""A writer of one key of a local space: bytes go to a temporary file
beside the key (small writes gathered, large ones written behind by the
space's threads), and ``commit`` is write-out + fsync + rename + fsync of
the directory, so a key is either absent, the old bytes, or the complete
new bytes (spaces/local.py)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from jointcloud.errors import OperationFailed
from jointcloud.spaces.fileio import write_all, write_behind
from jointcloud.spaces.localdirs import ParentDir

if TYPE_CHECKING:
    from jointcloud.spaces.local import LocalSpace

_DIRECT_WRITE = 1 << 20  # writes at least this big skip the buffer
_FLUSH_AT = 4 << 20  # buffered small writes are flushed in batches this big


class LocalWriter:
    def __init__(self, space: LocalSpace, key: str, fd: int, parent: ParentDir, tmp: str):
        self._space = space
        self._key = key
        self._fd: int | None = fd
        self._parent = parent
        self._tmp = tmp
        self._buf = bytearray()
        self._written = 0
        with space._writing_lock:
            space._writing[key] = self

    def _open_fd(self) -> int:
        if self._fd is None:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        return self._fd

    async def write(self, data: bytes) -> None:
        fd = self._open_fd()
        out: bytes | bytearray = data
        if self._buf:
            self._buf += data
            if len(self._buf) < _FLUSH_AT:
                return
            out, self._buf = self._buf, bytearray()
        elif len(data) < _DIRECT_WRITE:
            self._buf += data
            return
        offset = self._written
        self._written += len(out)
        try:
            await self._space._run(self._key, write_behind, fd, offset, out, writing=True)
        except BaseException:
            await self.abort()  # a failed write (e.g. disk full) leaves no temp file
            raise

    async def commit(self) -> None:
        fd = self._open_fd()
        self._fd = None
        buf, self._buf = self._buf, bytearray()
        try:
            await self._space._run(self._key, self._commit_sync, fd, buf, writing=True)
        except BaseException:
            await self._space.in_thread(lambda: self._discard(None))
            raise

    def _commit_sync(self, fd: int, buf: bytes | bytearray) -> None:
        durable = self._space.durable
        try:
            if buf:
                write_all(fd, buf)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._parent.rename(self._tmp, self._key.rpartition("/")[2])
        self._space._done_writing(self._key, self)
        try:
            if durable:
                self._parent.sync()
        finally:
            self._parent.close()
        self._space._touch(self._key)

    def touch(self) -> None:
        self._parent.touch(self._tmp)

    async def abort(self) -> None:
        fd, self._fd = self._fd, None
        self._buf = bytearray()
        if fd is not None:
            await self._space.in_thread(lambda: self._discard(fd))

    def _discard(self, fd: int | None) -> None:
        """Remove the temporary file (gone already if the rename happened)."""
        self._space._done_writing(self._key, self)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._parent.unlink(self._tmp)
        self._parent.close()
