"""``client_gone``: asks an ASGI ``receive`` whether the client went away
without waiting for it and without losing a message it would have taken."""

from __future__ import annotations

import asyncio
from typing import Any

from jointcloud.api.common.http import client_gone


class Cycle:
    """The shape of uvicorn's ``RequestResponseCycle.receive``: wait for the
    event, then take the message."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.messages: list[dict[str, Any]] = []
        self.taken = 0

    async def receive(self) -> dict[str, Any]:
        if not self.messages:
            await self.event.wait()
            self.event.clear()
        self.taken += 1
        return self.messages.pop(0)

    def put(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.event.set()


async def test_a_client_still_there_is_not_waited_for() -> None:
    cycle = Cycle()
    assert await asyncio.wait_for(client_gone(cycle.receive), 1) is False
    # The abandoned wait left nothing behind: the next message reaches the
    # next receive, whole.
    assert cycle.taken == 0
    assert not cycle.event._waiters
    later = asyncio.ensure_future(cycle.receive())
    cycle.put({"type": "http.disconnect"})
    assert await asyncio.wait_for(later, 1) == {"type": "http.disconnect"}


async def test_a_client_that_left_is_seen() -> None:
    cycle = Cycle()
    cycle.put({"type": "http.disconnect"})
    assert await client_gone(cycle.receive) is True


async def test_a_pending_message_that_is_not_a_disconnect_means_still_there() -> None:
    cycle = Cycle()
    cycle.put({"type": "http.request", "body": b"", "more_body": False})
    assert await client_gone(cycle.receive) is False


async def test_a_receive_that_suspends_twice_is_closed_at_the_first() -> None:
    # A middleware's receive wrapping the server's: the step stops at the
    # innermost wait, and closing it unwinds the wrappers' finally blocks.
    cycle = Cycle()
    unwound: list[bool] = []

    async def wrapped() -> dict[str, Any]:
        try:
            return await cycle.receive()
        finally:
            unwound.append(True)

    assert await client_gone(wrapped) is False
    assert unwound == [True]
    assert cycle.taken == 0
