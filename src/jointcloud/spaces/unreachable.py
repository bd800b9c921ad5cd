"""A stand-in for a space whose backend cannot even be opened (a Local
directory replaced by a file, a cloud whose configuration no longer loads).

Reads route around failing blocks; giving them a space that fails every call
with ``SpaceUnavailable`` keeps that one code path instead of a special case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

from jointcloud.errors import SpaceUnavailable
from jointcloud.spaces.base import BlockWriter, Capabilities, Entry


class UnreachableSpace:
    capabilities = Capabilities()

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self) -> NoReturn:
        raise SpaceUnavailable(self.reason)

    async def open_writer(self, key: str) -> BlockWriter:
        self._fail()

    async def put(self, key: str, data: bytes) -> None:
        self._fail()

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._fail()

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        self._fail()
        yield b""  # pragma: no cover - makes this an async generator

    async def stat(self, key: str) -> Entry:
        self._fail()

    async def delete(self, key: str) -> None:
        self._fail()

    async def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        self._fail()
        yield Entry("", 0, 0.0)  # pragma: no cover

    async def keep_alive(self, key: str) -> None:
        return None  # an unfinished write leaves nothing to sweep here

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        self._fail()

    async def flush(self) -> None:
        return None  # every commit is durable already

    async def close(self) -> None:
        return None
