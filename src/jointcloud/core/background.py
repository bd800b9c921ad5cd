"""Clean-up that must run to its end even when the request that started it
is cancelled (a client that went away must not leave blocks behind), and
work left to end on its own (puts on a cloud that does not answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

# Strong references: a task only referenced by the event loop may be
# collected before it finishes.
_running: set[asyncio.Future[Any]] = set()


async def finish(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    await asyncio.shield(task)


def leave(task: asyncio.Future[Any]) -> None:
    """Let ``task`` run to its end unawaited: kept referenced until then,
    its outcome retrieved (no "never retrieved" warning)."""
    _running.add(task)
    task.add_done_callback(_running.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
