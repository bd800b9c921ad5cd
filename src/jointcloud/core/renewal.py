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


def join(layout_ids: Iterable[int], writes: Iterable[tuple[Space, str]] = ()) -> None:
    """Add what was just staged to the lease of the request, if one is held."""
    lease = _current.get()
    if lease is not None:
        lease.layouts.update(layout_ids)
        lease.writes.extend(writes)


class Renewals:
    """One renewer per process for every lease held: a request only
    registers its lease (no task of its own: small uploads are most of
    them), and the renewer runs while any lease is held."""

    def __init__(self, db: Database, every: float | None) -> None:
        self.db = db
        self.every = every  # seconds; None or 0: never (GC without a delay)
        self._held: set[Lease] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._renewer: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Renew everything staged inside this block until it ends. Within
        a lease already held, that one does."""
        if not self.every or _current.get() is not None:
            yield
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an event and a task belong to one loop
            self._loop, self._idle, self._renewer = loop, asyncio.Event(), None
            self._held = set()
        lease = Lease()
        token = _current.set(lease)
        self._held.add(lease)
        self._idle.clear()
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._run(self.every))
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # exited in another context
                _current.reset(token)
            self._held.discard(lease)
            if not self._held:
                self._idle.set()  # the renewer ends now, not a period later

    async def _run(self, every: float) -> None:
        # Ends when no lease is held (woken by ``_idle``); one held again
        # before this step ran keeps it going.
        while self._held:
            try:
                await asyncio.wait_for(self._idle.wait(), every)
            except TimeoutError:
                await self._renew(list(self._held))

    async def _renew(self, leases: list[Lease]) -> None:
        # Each failure on its own: one space that cannot touch its files
        # must not cost every other upload its renewal. Tried again next
        # time; GC's delay is four renewals.
        for lease in leases:
            for space, key in list(lease.writes):
                try:
                    await space.keep_alive(key)
                except Exception as exc:
                    log.warning("keeping an upload's block write alive failed", error=repr(exc))
        ids = sorted({i for lease in leases for i in lease.layouts})
        if not ids:
            return
        try:
            async with self.db.write() as conn:
                await layouts.renew_pending(conn, ids)
        except Exception as exc:
            log.warning("renewing uploads' pending layouts failed", error=repr(exc))
