"""Work over many rows, done in pieces on the event loop.

Why: one event loop serves every request of a process, and a turn of the
loop runs every callback that is ready. A listing of 1,000 keys read its
rows, built its entries and rendered them without suspending: one callback
of about 4 ms. Sixteen clients of one user listing at once made each turn
up to 64 ms long, and another user's 4 KiB GET, which suspends a few times,
waited about 120 ms (docs/decisions.md, "Listings in pieces"). Loops over
rows therefore suspend between pieces of ``PIECE`` items: every other
request gets a turn after each piece, whoever's listing is running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items per piece: about 0.2-0.5 ms of work for a listing's rows.
PIECE = 256


async def turn() -> None:
    """Let every callback that is ready run before going on."""
    await asyncio.sleep(0)


async def map_in_turns(fn: Callable[[T], R], items: Sequence[T], piece: int = PIECE) -> list[R]:
    """``[fn(x) for x in items]``, suspending between pieces of ``piece`` items."""
    return await map_pieces_in_turns(lambda part: [fn(x) for x in part], items, piece)


async def map_pieces_in_turns(
    fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], piece: int = PIECE
) -> list[R]:
    """``fn`` of each piece of ``piece`` items, joined, suspending between
    pieces (``fn`` maps a whole piece: what it looks up once is looked up
    once per piece)."""
    out: list[R] = []
    for start in range(0, len(items), piece):
        if start:
            await turn()
        out += fn(items[start : start + piece])
    return out


async def in_turns(items: Iterable[T]) -> AsyncIterator[T]:
    """``items``, with a turn of the event loop before each one but the
    first (chunks of a long list of ids, each one statement)."""
    for i, item in enumerate(items):
        if i:
            await turn()
        yield item
