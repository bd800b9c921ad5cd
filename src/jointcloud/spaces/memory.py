"""In-memory space: production code for ephemeral/internal use and the fast test fixture.

Keys map to immutable ``bytes`` in a dict; a writer collects chunks and joins them
once on ``commit``, so nothing is visible before then. ``sub(root)`` gives a view
under a sub-directory sharing the same dict, like ``rootPath`` in a real bucket.
``available`` is a fault switch for tests: when ``False`` every operation raises
``SpaceUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from jointcloud.errors import BadArgument, BlockNotFound, OperationFailed, SpaceUnavailable
from jointcloud.spaces.base import Capabilities, Entry, check_key


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise BadArgument(f"read offset must be >= 0, got {offset}")
    if length is not None and length < 0:
        raise BadArgument(f"read length must be >= 0, got {length}")


class _Store:
    """What every view of one named memory space shares."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, float]] = {}
        self.available = True


class MemoryWriter:
    def __init__(self, space: MemorySpace, key: str) -> None:
        self._space = space
        self._key = key
        self._chunks: list[bytes] = []
        self._done = False

    async def write(self, data: bytes) -> None:
        self._space._check(self._key)
        if self._done:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        self._chunks.append(bytes(data))

    async def commit(self) -> None:
        self._space._check(self._key)
        if self._done:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        self._done = True
        self._space._store(self._key, b"".join(self._chunks))
        self._chunks = []

    async def abort(self) -> None:
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

    async def open_writer(self, key: str) -> MemoryWriter:
        check_key(key)
        self._check(key)
        return MemoryWriter(self, key)

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._check(key)
        self._store(key, bytes(data))

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        _check_range(offset, length)
        data = self._get(key)[0]
        end = len(data) if length is None else offset + length
        return data[offset:end]

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        _check_range(offset, length)
        data = self._get(key)[0]
        end = len(data) if length is None else min(len(data), offset + length)
        view = memoryview(data)
        for pos in range(offset, end, chunk):
            self._check(key)
            yield bytes(view[pos : min(pos + chunk, end)])

    async def stat(self, key: str) -> Entry:
        data, mtime = self._get(key)
        return Entry(key=key, size=len(data), mtime=mtime)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._check(key)
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

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        return 0  # uncommitted writes live only in their writer

    async def flush(self) -> None:
        return None  # every commit is durable already

    async def close(self) -> None:
        return None
