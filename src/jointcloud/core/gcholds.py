"""GC waits the longest delay that a live server process counts on.

A process's readers of a released layout, and its writers of a pending one
(they renew it every quarter of the delay), are safe from GC for the delay
that process was configured with. Processes sharing one database may be
configured differently, and a GC with a shorter delay than another process's
took that process's uploads in flight (they failed at their commit) and the
blocks its readers were still streaming. So every ``jcs serve`` process
announces its delay in the database, again every ``ANNOUNCE_EVERY``, and the
GC job of every process waits the longest delay announced by one that is
alive: renewed within ``STALE_AFTER`` and, if on this host, a running PID
(``leases.owner_dead``). A process that stops withdraws its announcement.

``jcs admin gc`` is an operator's pass and takes the delay it is given
(``JCS_GC_DELAY_SECONDS=0`` collects everything unreferenced at once, even
under running servers): that is a choice made on purpose, not a mismatch.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from jointcloud.core.leases import new_owner, owner_dead
from jointcloud.meta import holds
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

log = structlog.get_logger(__name__)

ANNOUNCE_EVERY = 60.0  # seconds
# An announcement this old is of a process that died (or lost its database
# for longer, when its uploads fail anyway); GC forgets it.
STALE_AFTER = timedelta(minutes=5)


class DelayAnnouncement:
    """This process's GC delay, kept announced while it serves."""

    def __init__(self, db: Database, delay: timedelta, owner: str | None = None) -> None:
        self.db = db
        self.seconds = delay.total_seconds()
        self.owner = owner or new_owner()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Announce now (before the first request), then every minute."""
        await self._announce()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with self.db.write() as conn:
                await holds.withdraw(conn, self.owner)
        except Exception as exc:  # it goes stale, and GC forgets it
            log.warning("withdrawing this process's GC delay failed", error=repr(exc))

    async def _announce(self) -> None:
        async with self.db.write() as conn:
            await holds.announce(conn, self.owner, self.seconds, now())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY)
            try:
                await self._announce()
            except Exception as exc:  # tried again in a minute
                log.warning("announcing this process's GC delay failed", error=repr(exc))


async def longest_delay(db: Database, own: timedelta) -> timedelta:
    """``own``, or the longer delay a live process announced."""
    async with db.read() as conn:
        found = await holds.announced(conn, now() - STALE_AFTER)
    alive = [timedelta(seconds=seconds) for owner, seconds in found if not owner_dead(owner)]
    return max([own, *alive])


async def forget_stale(db: Database) -> int:
    async with db.write() as conn:
        return await holds.forget_before(conn, now() - STALE_AFTER)
