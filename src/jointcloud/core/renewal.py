"""Pending layouts kept from GC while their upload runs.

An upload records its intent (a pending layout) before it writes a byte, and
GC takes pending layouts older than its delay: that is how the blocks of a
writer that died go. A writer that is alive must therefore say so, however
long its client takes: every staged layout of a request (a multi-file upload
stages many, and commits them all at the end) is renewed every quarter of
GC's delay from its intent until the request ends, and the unfinished writes
of its blocks are kept from the sweep of temporary files
(``Space.keep_alive``).

A lease is held around a whole request (``Renewals.held``); what is staged
inside it, by the request's task or the tasks it starts (batches of small
files), joins it through a context variable. Staging outside any request's
lease (a multipart part, a recode) holds one of its own for the write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar

import structlog

from jointcloud.meta import layouts
from jointcloud.meta.db import Database
from jointcloud.spaces.base import Space

log = structlog.get_logger(__name__)


class Lease:
    """What one request staged: its layouts and its blocks' writes."""

    def __init__(self) -> None:
        self.layouts: set[int] = set()
        self.writes: list[tuple[Space, str]] = []


_current: ContextVar[Lease | None] = ContextVar("jcs_staging_lease", default=None)
# Strong references to renewers finishing after their request (a renewal
# in its transaction is let end rather than cancelled).
_finishing: set[asyncio.Future[None]] = set()


def join(layout_ids: Iterable[int], writes: Iterable[tuple[Space, str]] = ()) -> None:
    """Add what was just staged to the lease of the request, if one is held."""
    lease = _current.get()
    if lease is not None:
        lease.layouts.update(layout_ids)
        lease.writes.extend(writes)


class Renewals:
    def __init__(self, db: Database, every: float | None) -> None:
        self.db = db
        self.every = every  # seconds; None or 0: never (GC without a delay)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Renew everything staged inside this block until it ends. Within
        a lease already held, that one does."""
        if not self.every or _current.get() is not None:
            yield
            return
        lease = Lease()
        token = _current.set(lease)
        stop = asyncio.Event()
        renewer = asyncio.ensure_future(self._run(lease, self.every, stop))
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # exited in another context
                _current.reset(token)
            stop.set()
            _finishing.add(renewer)
            renewer.add_done_callback(_finishing.discard)

    async def _run(self, lease: Lease, every: float, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            try:
                for space, key in list(lease.writes):
                    await space.keep_alive(key)
                if lease.layouts:
                    async with self.db.write() as conn:
                        await layouts.renew_pending(conn, sorted(lease.layouts))
            except Exception as exc:  # tried again next time; GC's delay is 4 renewals
                log.warning("renewing an upload's pending layouts failed", error=repr(exc))
