"""A dict-backed ``Space`` for data-plane tests, with fault injection and read
accounting, so those tests depend on nothing but the protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from jointcloud.errors import BlockNotFound, SpaceUnavailable
from jointcloud.spaces.base import Capabilities, Entry


class FakeWriter:
    def __init__(self, space: FakeSpace, key: str) -> None:
        self.space = space
        self.key = key
        self.parts: list[bytes] = []
        self.state = "open"

    async def write(self, data: bytes) -> None:
        assert self.state == "open", f"write after {self.state}"
        self.space.write_calls += 1
        if (
            self.space.fail_write_after is not None
            and self.space.write_calls > self.space.fail_write_after
        ):
            raise SpaceUnavailable("injected write failure")
        if self.space.write_delay:
            await asyncio.sleep(self.space.write_delay)
        self.parts.append(bytes(data))

    async def commit(self) -> None:
        assert self.state == "open", f"commit after {self.state}"
        if self.space.fail_commit:
            raise SpaceUnavailable("injected commit failure")
        self.space.objects[self.key] = b"".join(self.parts)
        self.state = "committed"

    async def abort(self) -> None:
        if self.state == "open":
            self.state = "aborted"
        self.parts = []


class FakeSpace:
    capabilities = Capabilities()

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self.writers: list[FakeWriter] = []
        self.reads: list[tuple[str, int, int | None]] = []
        self.bytes_read = 0
        self.write_calls = 0
        self.fail_write_after: int | None = None
        self.fail_commit = False
        self.fail_reads = False
        self.write_delay = 0.0

    async def open_writer(self, key: str) -> FakeWriter:
        writer = FakeWriter(self, key)
        self.writers.append(writer)
        return writer

    async def put(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self.reads.append((key, offset, length))
        if self.fail_reads:
            raise SpaceUnavailable("injected read failure")
        try:
            data = self.objects[key]
        except KeyError:
            raise BlockNotFound(f"{key} not found") from None
        end = len(data) if length is None else offset + length
        out = data[offset:end]
        self.bytes_read += len(out)
        return out

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        data = await self.read(key, offset, length)
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    async def stat(self, key: str) -> Entry:
        if key not in self.objects:
            raise BlockNotFound(f"{key} not found")
        return Entry(key, len(self.objects[key]), time.time())

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield Entry(key, len(self.objects[key]), time.time())

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # test helpers
    def corrupt(self, key: str, at: int = 0) -> None:
        data = bytearray(self.objects[key])
        data[at] ^= 0x01
        self.objects[key] = bytes(data)

    def reset_counters(self) -> None:
        self.reads = []
        self.bytes_read = 0
