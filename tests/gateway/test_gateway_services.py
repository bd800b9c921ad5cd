"""What a satellite or an auth service answers the facade is read up to
1 MiB (found by review, 2026-12-06, seventh session: a 400 MiB answer was
read whole and took the server to 1.4-1.9 GB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from gw_support import read

from jointcloud.api.gateway.fetch import MAX_ANSWER
from jointcloud.keys.caveats import new_api_key

HUGE = 64 * 1024 * 1024
PIECE = 64 * 1024


class Flood:
    """A service on loopback answering every request with ``HUGE`` bytes (no
    length declared); ``sent`` counts what it could hand to the socket
    before its client hung up."""

    def __init__(self) -> None:
        self.sent = 0
        self.done = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    await reader.readexactly(int(value))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(b"Connection: close\r\n\r\n")
            piece = b" " * PIECE
            while self.sent < HUGE:
                writer.write(piece)
                await writer.drain()
                self.sent += PIECE
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.done.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def flood() -> AsyncIterator[Flood]:
    service = Flood()
    await service.start()
    try:
        yield service
    finally:
        await service.close()


@pytest.mark.parametrize("xml", [False, True])
async def test_a_huge_satellite_answer_is_refused_past_the_cap(
    gw: httpx.AsyncClient, flood: Flood, xml: bool
) -> None:
    key = new_api_key(b"f" * 32).serialize()  # a key that parses: the call is made
    form = {"satellite_node_url": flood.url, "restrict_key": key, "password": "p"}
    params = {"data_format": "xml"} if xml else {}
    answer = read(await gw.post("/createAccessGrant", data=form, params=params), xml=xml)
    assert answer.code == -1
    assert answer.msg == (
        f"satellite {flood.url}: the answer is larger than {MAX_ANSWER} bytes (1 MiB), "
        "the most the facade reads from it"
    )
    await asyncio.wait_for(flood.done.wait(), 10)
    assert flood.sent < 16 * 1024 * 1024, flood.sent  # read no further than the cap


async def test_a_huge_auth_service_answer_is_refused_past_the_cap(
    gw: httpx.AsyncClient, flood: Flood
) -> None:
    form = {"auth_service": flood.url, "access_grant": "x"}
    answer = read(await gw.post("/createCredentials", data=form), xml=False)
    assert answer.code == -1
    assert answer.msg.startswith(f"auth service {flood.url}: the answer is larger than ")
    assert "1 MiB" in answer.msg
    await asyncio.wait_for(flood.done.wait(), 10)
    assert flood.sent < 16 * 1024 * 1024, flood.sent
