"""How the data path runs its work: CPU work in its own thread pool,
concurrent awaits that leave nothing running behind when one fails, and
attempts raced against each other (hedged reads).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")

# CPU work (hashing, AES, EC) runs here, off the event loop and apart from the
# default executor that spaces use for file I/O.
_CPU = ThreadPoolExecutor(
    max_workers=min(32, 2 * (os.cpu_count() or 2)), thread_name_prefix="jcs-cpu"
)


async def _cpu(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_CPU, fn, *args)


async def _run_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure (or cancellation) cancel the rest and
    wait for them, then raise it. Unlike ``gather`` nothing keeps running behind."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        errors = [t.exception() for t in tasks if not t.cancelled()]
    for exc in errors:
        if exc is not None:
            raise exc
    return [t.result() for t in tasks]


def _forget(task: asyncio.Future[Any] | None) -> None:
    """Cancel a task we no longer await, without an unretrieved-exception warning."""
    if task is None:
        return
    if task.done():
        if not task.cancelled():
            task.exception()  # mark it retrieved
        return
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


class Attempts(Generic[K, T]):
    """Attempts at one thing, in flight together, keyed by whom they ask (a
    block): a hedged read starts the next block's when the ones in flight
    are slow, and takes the first answers. ``cancel`` forgets the rest."""

    def __init__(self, attempt: Callable[[K], Awaitable[T]]) -> None:
        self._attempt = attempt
        self._pending: dict[asyncio.Future[T], K] = {}

    def start(self, key: K) -> None:
        self._pending[asyncio.ensure_future(self._attempt(key))] = key

    @property
    def in_flight(self) -> list[K]:
        return list(self._pending.values())

    async def ended(self, patience: float | None) -> list[tuple[K, asyncio.Future[T]]]:
        """The attempts that have ended, in the order they were started,
        waiting up to ``patience`` seconds (None: for as long as it takes)
        for the first; ``[]`` when none ended in time."""
        if not self._pending:
            raise RuntimeError("no attempt in flight")
        done, _ = await asyncio.wait(
            self._pending, timeout=patience, return_when=asyncio.FIRST_COMPLETED
        )
        ended = [(key, fut) for fut, key in self._pending.items() if fut in done]
        for _, fut in ended:
            del self._pending[fut]
        return ended

    def cancel(self) -> None:
        for fut in self._pending:
            _forget(fut)
        self._pending.clear()
