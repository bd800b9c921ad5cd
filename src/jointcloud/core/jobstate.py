"""The durable state of the background jobs, as a core service.

One row per job name in the metadata database holds its lease (who runs it
and until when), its progress, the outcome of its last pass, when it is due
next and a cursor (a job's resume point). ``jobs/`` and ``jcs admin`` reach
that row only through :class:`JobBoard` (DESIGN §4: jobs and the CLI reach
the database only through core services).

A lease owner is ``host:pid:nonce`` (``core.leases``): the lease of a process
that died on this host is taken over at once instead of after it runs out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from jointcloud.core.leases import owner_dead
from jointcloud.meta import jobs as repo
from jointcloud.meta.db import Database
from jointcloud.meta.jobs import JobState
from jointcloud.meta.rows import now

__all__ = ["JobBoard", "JobCursor", "JobState"]


class JobBoard:
    """Leases, progress, cursors and wake-ups of the jobs sharing one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def register(self, names: Iterable[str]) -> None:
        """Make sure every job has its row (idempotent)."""
        async with self.db.write() as conn:
            for name in names:
                await repo.ensure(conn, name)

    # --- leases -------------------------------------------------------------

    async def acquire(self, name: str, owner: str, lease: timedelta) -> bool:
        """Take the lease of ``name`` for ``lease`` if it is free, expired, ours
        or held by a process of this host that is gone; False if another runs it."""
        ts = now()
        async with self.db.write() as conn:
            holder = await repo.lease_owner(conn, name)
            dead = holder if owner_dead(holder) else None
            return await repo.acquire(conn, name, owner, ts + lease, ts, dead)

    async def renew(
        self, name: str, owner: str, lease: timedelta, done: int, total: int, message: str
    ) -> bool:
        """Extend our lease and record progress (the heartbeat of a running
        pass); False if the lease was lost."""
        async with self.db.write() as conn:
            return await repo.renew(conn, name, owner, now() + lease, done, total, message)

    async def release(
        self,
        name: str,
        owner: str,
        *,
        next_in: timedelta,
        message: str,
        error: str | None,
        done: int,
        total: int,
    ) -> None:
        """End a pass: record its outcome and when the job is due again."""
        ts = now()
        async with self.db.write() as conn:
            await repo.release(
                conn,
                name,
                owner,
                now=ts,
                next_run=ts + next_in,
                message=message,
                error=error,
                done=done,
                total=total,
            )

    # --- state --------------------------------------------------------------

    async def states(self) -> list[JobState]:
        """Every job's row, by name (``jcs admin jobs``)."""
        async with self.db.read() as conn:
            return await repo.list_all(conn)

    async def state(self, name: str) -> JobState | None:
        async with self.db.read() as conn:
            found = await repo.list_all(conn, name)
        return found[0] if found else None

    async def due(self, name: str, at: datetime | None = None) -> bool:
        """Whether a pass of ``name`` should start now: its next run has come
        and nobody alive holds its lease (a job without a row is due)."""
        st = await self.state(name)
        if st is None:
            return True
        ts = at or now()
        return (st.next_run is None or st.next_run <= ts) and (
            st.lease_until is None or st.lease_until <= ts or owner_dead(st.lease_owner)
        )

    async def wake(self, name: str) -> None:
        """Make ``name`` due now; a running pass is not disturbed."""
        async with self.db.write() as conn:
            await repo.wake(conn, name, now())

    # --- cursors ------------------------------------------------------------

    def cursor(self, name: str) -> JobCursor:
        return JobCursor(self, name)

    async def get_cursor(self, name: str) -> str | None:
        async with self.db.read() as conn:
            return await repo.get_cursor(conn, name)

    async def set_cursor(self, name: str, value: str | None) -> None:
        async with self.db.write() as conn:
            await repo.set_cursor(conn, name, value)


class JobCursor:
    """The durable resume point of one job (opaque text, ``None`` = start over)."""

    def __init__(self, board: JobBoard, name: str) -> None:
        self.board = board
        self.name = name

    async def get(self) -> str | None:
        return await self.board.get_cursor(self.name)

    async def set(self, value: str | None) -> None:
        await self.board.set_cursor(self.name, value)
