"""The ``Space`` protocol every storage backend implements.

A space is one failure domain the user owns (a directory, a cloud bucket).
Keys are relative ``/``-separated paths under the space's root; backends
translate vendor errors into ``jointcloud.errors`` space errors here, at this
boundary, so nothing above knows which cloud it talks to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from jointcloud.errors import BadArgument, BlockNotFound

T = TypeVar("T")


@dataclass(frozen=True)
class Capabilities:
    range_read: bool = True
    native_multipart: bool = False
    server_side_copy: bool = False
    listing: bool = True


@dataclass(frozen=True)
class Entry:
    """One listed key: its path relative to the listed root, size, mtime (epoch s)."""

    key: str
    size: int
    mtime: float


@runtime_checkable
class BlockWriter(Protocol):
    """A streaming write of one key; nothing is visible until ``commit``.

    A writer that keeps bytes after its ``write`` returned (a client
    library's part buffer, parts in flight) says how many at most as an
    ``int`` attribute ``held``; the upload waits for them longer before it
    checks the space (``stream._held``). Without it, none are held."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the written bytes durable and visible under the key."""

    async def abort(self) -> None:
        """Discard everything written; idempotent, never raises for cleanup."""


@runtime_checkable
class Space(Protocol):
    capabilities: Capabilities

    async def open_writer(self, key: str) -> BlockWriter: ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``[offset, offset+length)``; ``BlockNotFound`` if absent; a short
        result only at the end of the key."""

    def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]: ...

    async def stat(self, key: str) -> Entry: ...

    async def delete(self, key: str) -> None:
        """Remove the key; deleting an absent key is not an error."""

    def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        """Every key under ``prefix`` (a directory-like prefix), recursively."""

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        """Remove leftovers of writes that never committed (a crashed process's
        temporary files) last touched before ``older_than`` (epoch seconds),
        under the directory ``prefix`` but not under the directories in
        ``skip``; returns how many. Backends whose writes leave nothing behind
        return 0."""

    async def keep_alive(self, key: str) -> None:
        """A write of ``key`` that is still open is still wanted: what it has
        left so far must survive ``sweep_incomplete`` (its writer may wait on
        a slow client for longer than the sweep's delay). Backends whose
        unfinished writes leave nothing to sweep do nothing."""

    async def flush(self) -> None:
        """Make every write committed so far durable. Spaces opened for user
        file trees may skip the per-file fsync (see ``LocalSpace``); elsewhere
        every commit is already durable and this does nothing."""

    async def close(self) -> None: ...


@runtime_checkable
class BlockingSpace(Protocol):
    """A space whose I/O is local system calls: it can also be driven from a
    worker thread directly, so a transfer copies a batch of small files in
    one thread hop instead of two hops per file, and a read opens the
    chunks it read in the thread that read them. Errors are the same space
    errors as the async methods raise."""

    def read_blocking(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """What ``read`` returns, from the calling thread."""

    def put_blocking(self, key: str, data: bytes) -> None: ...

    def list_blocking(self, prefix: str = "") -> list[Entry]:
        """Everything ``list(prefix)`` yields, in one call."""

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the space's own threads, where its blocking
        calls belong: a mount that hangs holds only those."""


@runtime_checkable
class CachedReads(Protocol):
    """A space that can tell, without waiting, whether a read is in memory:
    a short read of a hot block is then served on the event loop, without
    the two thread hand-offs a worker's read costs (which on this 2-core VM
    were a fifth of a 1 MiB download's CPU: docs/decisions.md, "Hot reads
    on the loop")."""

    def read_cached(self, key: str, offset: int, length: int) -> bytes | bytearray | None:
        """``length`` bytes at ``offset`` if they are all in memory now; None
        otherwise, and for anything ``read`` would refuse or fail on."""


def check_key(key: str) -> str:
    """Reject keys that could escape the space's root or confuse backends."""
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise BadArgument(f"invalid storage key {key!r}")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise BadArgument(f"invalid storage key {key!r}")
    return key


async def unlike_written(space: Space, key: str, size: int) -> str | None:
    """What ``space`` holds under ``key`` when it is not the ``size`` bytes
    just written there ("nothing", "N bytes"); None when it is. A cloud
    may acknowledge a write it did not store: drain and repair look before
    they let an old block go (a stat, not a read back: other bytes of the
    right size are scrub's to find)."""
    try:
        found = (await space.stat(key)).size
    except BlockNotFound:
        return "nothing"
    return None if found == size else f"{found} bytes"
