"""In-memory space: production code for ephemeral/internal use and the fast test fixture.

Keys map to immutable ``bytes`` in a dict; a writer collects chunks and joins them
once on ``commit``, so nothing is visible before then. ``sub(root)`` gives a view
under a sub-directory sharing the same dict, like ``rootPath`` in a real bucket.

For tests and benchmarks (every view of one space shares them): ``available``
is a fault switch (when ``False`` every operation raises ``SpaceUnavailable``),
``faults`` injects narrower failures (reads, writes after a count, commits) and
hooks before each read and write (a delay, a gate), ``stats`` counts what was asked of
the space, and ``contents``/``corrupt`` look at and damage the stored bytes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from jointcloud.errors import BadArgument, BlockNotFound, OperationFailed, SpaceUnavailable
from jointcloud.spaces.base import Capabilities, Entry, check_key


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise BadArgument(f"read offset must be >= 0, got {offset}")
    if length is not None and length < 0:
        raise BadArgument(f"read length must be >= 0, got {length}")


@dataclass
class Faults:
    """Failures to inject, for tests and benchmarks. Reads (``read``,
    ``read_stream``) fail with ``fail_reads``; a writer's ``write`` fails once
    the space has seen ``fail_writes_after`` of them; ``commit`` fails with
    ``fail_commit``. ``before_write`` is awaited before every ``write`` of a
    writer, ``before_read`` before every ``read``, ``before_delete`` before
    every ``delete``: a delay, or a gate a test opens when it wants (a cloud
    that hangs)."""

    fail_reads: bool = False
    fail_writes_after: int | None = None
    fail_commit: bool = False
    before_write: Callable[[], Awaitable[None]] | None = None
    before_read: Callable[[], Awaitable[None]] | None = None
    before_delete: Callable[[], Awaitable[None]] | None = None


@dataclass
class Stats:
    """What was asked of the space, for tests and benchmarks: counters, and a
    log of every read's (key, offset, length) once ``read_log`` is a list."""

    reads: int = 0  # read and read_stream calls, failed ones too
    bytes_read: int = 0
    write_calls: int = 0  # writes to a writer, failed ones too
    writers: int = 0  # writers opened
    commits: int = 0
    aborts: int = 0  # writers aborted before a commit
    read_log: list[tuple[str, int, int | None]] | None = None

    @property
    def open_writers(self) -> int:
        """Writers neither committed nor aborted."""
        return self.writers - self.commits - self.aborts

    def reset(self) -> None:
        """Back to zero (an enabled read log stays enabled, emptied)."""
        self.reads = self.bytes_read = self.write_calls = 0
        self.writers = self.commits = self.aborts = 0
        if self.read_log is not None:
            self.read_log = []


@dataclass
class _Store:
    """What every view of one named memory space shares."""

    data: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    available: bool = True
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)


class MemoryWriter:
    def __init__(self, space: MemorySpace, key: str) -> None:
        self._space = space
        self._key = key
        self._chunks: list[bytes] = []
        self._done = False

    async def write(self, data: bytes) -> None:
        space = self._space
        space._check(self._key)
        if self._done:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        space.stats.write_calls += 1
        limit = space.faults.fail_writes_after
        if limit is not None and space.stats.write_calls > limit:
            raise SpaceUnavailable(f"injected write failure (key {self._key!r})")
        if space.faults.before_write is not None:
            await space.faults.before_write()
        self._chunks.append(bytes(data))

    async def commit(self) -> None:
        space = self._space
        space._check(self._key)
        if self._done:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        if space.faults.fail_commit:
            raise SpaceUnavailable(f"injected commit failure (key {self._key!r})")
        self._done = True
        space._store(self._key, b"".join(self._chunks))
        space.stats.commits += 1
        self._chunks = []

    async def abort(self) -> None:
        if not self._done:
            self._space.stats.aborts += 1
        self._done = True
        self._chunks = []


class MemorySpace:
    """A space whose blocks live in a dict; lost when the process exits."""

    capabilities = Capabilities(range_read=True, listing=True)

    def __init__(self, name: str = "memory", *, _shared: _Store | None = None, _prefix: str = ""):
        self.name = name
        self._shared = _shared or _Store()
        self._data = self._shared.data
        self._prefix = _prefix

    @property
    def available(self) -> bool:
        """Test fault switch, shared by every view of the same store."""
        return self._shared.available

    @available.setter
    def available(self, value: bool) -> None:
        self._shared.available = value

    @property
    def faults(self) -> Faults:
        """Failures to inject (see ``Faults``), shared by every view."""
        return self._shared.faults

    @property
    def stats(self) -> Stats:
        """What was asked of the space (see ``Stats``), shared by every view."""
        return self._shared.stats

    def contents(self) -> dict[str, bytes]:
        """The committed keys of this view and their bytes (a copy), for tests."""
        cut = len(self._prefix)
        return {k[cut:]: data for k, (data, _) in self._data.items() if k.startswith(self._prefix)}

    def corrupt(self, key: str, at: int = 0) -> None:
        """Flip one bit of a stored key at byte ``at`` (bit rot), for tests."""
        full = self._prefix + check_key(key)
        data, mtime = self._data[full]
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        self._data[full] = (bytes(damaged), mtime)

    def __repr__(self) -> str:
        return f"MemorySpace(name={self.name!r}, root={self._prefix!r})"

    def sub(self, root: str) -> MemorySpace:
        """A view of the keys under ``root/`` (which appear there without the prefix)."""
        root = root.strip("/")
        if not root:
            return self
        check_key(root)
        return MemorySpace(self.name, _shared=self._shared, _prefix=f"{self._prefix}{root}/")

    def _check(self, key: str | None = None) -> None:
        if not self.available:
            what = f" (key {key!r})" if key is not None else ""
            raise SpaceUnavailable(f"memory space {self.name!r} is unavailable{what}")

    def _store(self, key: str, data: bytes) -> None:
        self._data[self._prefix + key] = (data, time.time())

    def _get(self, key: str) -> tuple[bytes, float]:
        check_key(key)
        self._check(key)
        try:
            return self._data[self._prefix + key]
        except KeyError:
            raise BlockNotFound(f"key {key!r} not found in memory space {self.name!r}") from None

    def _read(self, key: str, offset: int, length: int | None) -> bytes:
        """The stored bytes of ``key``, counted (and failed, if asked to)."""
        _check_range(offset, length)
        stats = self.stats
        stats.reads += 1
        if stats.read_log is not None:
            stats.read_log.append((key, offset, length))
        if self.faults.fail_reads:
            check_key(key)
            raise SpaceUnavailable(f"injected read failure (key {key!r})")
        return self._get(key)[0]

    async def open_writer(self, key: str) -> MemoryWriter:
        check_key(key)
        self._check(key)
        self.stats.writers += 1
        return MemoryWriter(self, key)

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._check(key)
        self._store(key, bytes(data))

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if self.faults.before_read is not None:
            await self.faults.before_read()
        data = self._read(key, offset, length)
        end = len(data) if length is None else offset + length
        out = data[offset:end]
        self.stats.bytes_read += len(out)
        return out

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        data = self._read(key, offset, length)
        end = len(data) if length is None else min(len(data), offset + length)
        view = memoryview(data)
        for pos in range(offset, end, chunk):
            self._check(key)
            piece = bytes(view[pos : min(pos + chunk, end)])
            self.stats.bytes_read += len(piece)
            yield piece

    async def stat(self, key: str) -> Entry:
        data, mtime = self._get(key)
        return Entry(key=key, size=len(data), mtime=mtime)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._check(key)
        if self.faults.before_delete is not None:
            await self.faults.before_delete()
        self._data.pop(self._prefix + key, None)

    async def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        self._check()
        base = prefix.strip("/")
        if base:
            check_key(base)
            base += "/"
        full = self._prefix + base
        cut = len(self._prefix)
        for key, (data, mtime) in sorted(self._data.items()):
            if key.startswith(full):
                yield Entry(key=key[cut:], size=len(data), mtime=mtime)

    async def keep_alive(self, key: str) -> None:
        return None  # an unfinished write leaves nothing to sweep here

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        return 0  # uncommitted writes live only in their writer

    async def flush(self) -> None:
        return None  # every commit is durable already

    async def close(self) -> None:
        return None
