"""The per-process cache of verified credentials (user keys, project keys,
S3 access key ids).

Why bounded in time: a key deleted or revoked in the database (by any
server process sharing it) must stop working everywhere within
``KEY_CACHE_SECONDS`` (DESIGN §6: no unbounded key caches). Why bounded in
size: at most ``KEY_CACHE_ENTRIES`` keys, the least recently used going.

Why one load per key at a time: every request carrying a key misses when
its entry expires. Under concurrency a burst of requests arrives together,
and each one re-verified the key on its own (a handful of statements and
HMACs each, and as many database round trips at once). Now the first miss
loads, and the misses that arrive while it runs wait for that load, as
long as it began less than ``KEY_CACHE_SECONDS`` ago: a request never gets
an answer read longer ago than the bound (a slow load is replaced, not
joined). A failed load (an unknown or revoked key) is never cached, so a
key created elsewhere works at once; the requests that waited on it get
the same error.

``clear`` and ``pop`` (a key deleted or revoked here, a user disabled)
take effect at once: later requests start a load of their own rather than
join one that read the key before, and that older load fills nothing (its
waiters still get its answer).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

KEY_CACHE_SECONDS = 2.0  # revocation reaches every process within this (< 5 s)
KEY_CACHE_ENTRIES = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyCache(Generic[K, V]):
    def __init__(
        self,
        seconds: float = KEY_CACHE_SECONDS,
        entries: int = KEY_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.entries = entries
        self.clock = clock
        self._hits: OrderedDict[K, tuple[float, V]] = OrderedDict()
        # key -> (when its load began, the load): one at a time per key
        self._loading: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key`` if fresh, else what ``load`` gives
        (one load per key at a time; its failures are not cached)."""
        now = self.clock()
        hit = self._hits.get(key)
        if hit is not None and hit[0] > now:
            self._hits.move_to_end(key)
            return hit[1]
        running = self._loading.get(key)
        if running is None or running[0] + self.seconds <= now:
            # None running, or one that began reading too long ago to answer
            # within the bound (a slow load): a new one replaces it.
            task = asyncio.ensure_future(self._load(key, load, now))
            task.add_done_callback(_retrieved)
            running = (now, task)
            self._loading[key] = running
        # Shielded: one waiter going away does not cancel the others' load.
        return await asyncio.shield(running[1])

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], started: float) -> V:
        try:
            value = await load()
        except BaseException:
            if self._forget_load(key):
                self._hits.pop(key, None)
            raise
        if self._forget_load(key):
            # Fresh for as long as from when it was read, not from now.
            self._hits[key] = (started + self.seconds, value)
            self._hits.move_to_end(key)
            while len(self._hits) > self.entries:
                self._hits.popitem(last=False)
        return value

    def _forget_load(self, key: K) -> bool:
        """Whether the running task is still ``key``'s load (not dropped by
        ``pop``/``clear`` nor replaced): only then may it fill the cache."""
        running = self._loading.get(key)
        if running is None or running[1] is not asyncio.current_task():
            return False
        del self._loading[key]
        return True

    def pop(self, key: K) -> None:
        """Forget ``key`` (deleted here): its next use loads again, and a
        load in flight (it read the key before) fills nothing."""
        self._hits.pop(key, None)
        self._loading.pop(key, None)

    def clear(self) -> None:
        self._hits.clear()
        self._loading.clear()

    def __len__(self) -> int:
        return len(self._hits)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A load whose waiters all went away still ends; its error is theirs."""
    if not task.cancelled():
        task.exception()
