"""Durable job state and leases (one row per job name)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta import tables as t
from jointcloud.meta.rows import aware


@dataclass(frozen=True)
class JobState:
    name: str
    state: str
    lease_owner: str | None
    lease_until: datetime | None
    progress_done: int
    progress_total: int
    message: str
    runs: int
    last_started: datetime | None
    last_finished: datetime | None
    last_error: str | None
    next_run: datetime | None
    cursor: str | None


def _opt(ts: datetime | None) -> datetime | None:
    return None if ts is None else aware(ts)


async def ensure(conn: AsyncConnection, name: str) -> None:
    found = await conn.execute(select(t.jobs.c.name).where(t.jobs.c.name == name))
    if found.first() is None:
        await conn.execute(
            insert(t.jobs).values(
                name=name,
                state="idle",
                progress_done=0,
                progress_total=0,
                message="",
                runs=0,
            )
        )


async def acquire(
    conn: AsyncConnection,
    name: str,
    owner: str,
    until: datetime,
    now: datetime,
    dead_owner: str | None = None,
) -> bool:
    """Take the lease if it is free, expired, ours, or ``dead_owner``'s."""
    res = await conn.execute(
        update(t.jobs)
        .where(
            t.jobs.c.name == name,
            (t.jobs.c.lease_owner.is_(None))
            | (t.jobs.c.lease_until < now)
            | (t.jobs.c.lease_owner == owner)
            | (t.jobs.c.lease_owner == (dead_owner or owner)),
        )
        .values(
            lease_owner=owner,
            lease_until=until,
            state="running",
            last_started=now,
            # Cleared for the pass: a wake that comes while it runs sets it
            # again, and ``release`` keeps that instead of the interval.
            next_run=None,
            progress_done=0,
            progress_total=0,
            message="",
        )
    )
    return res.rowcount == 1


async def renew(
    conn: AsyncConnection,
    name: str,
    owner: str,
    until: datetime,
    done: int,
    total: int,
    message: str,
) -> bool:
    """Extend our lease and record progress; False if the lease was lost."""
    res = await conn.execute(
        update(t.jobs)
        .where(t.jobs.c.name == name, t.jobs.c.lease_owner == owner)
        .values(lease_until=until, progress_done=done, progress_total=total, message=message)
    )
    return res.rowcount == 1


async def release(
    conn: AsyncConnection,
    name: str,
    owner: str,
    *,
    now: datetime,
    next_run: datetime,
    message: str,
    error: str | None,
    done: int,
    total: int,
) -> None:
    await conn.execute(
        update(t.jobs)
        .where(t.jobs.c.name == name, t.jobs.c.lease_owner == owner)
        .values(
            lease_owner=None,
            lease_until=None,
            state="idle",
            last_finished=now,
            next_run=func.coalesce(t.jobs.c.next_run, literal(next_run, t.jobs.c.next_run.type)),
            message=message,
            last_error=error,
            runs=t.jobs.c.runs + 1,
            progress_done=done,
            progress_total=total,
        )
    )


async def get_cursor(conn: AsyncConnection, name: str) -> str | None:
    row = await conn.execute(select(t.jobs.c.cursor).where(t.jobs.c.name == name))
    value = row.scalar_one_or_none()
    return None if value is None else str(value)


async def set_cursor(conn: AsyncConnection, name: str, cursor: str | None) -> None:
    await conn.execute(update(t.jobs).where(t.jobs.c.name == name).values(cursor=cursor))


async def list_all(conn: AsyncConnection, name: str | None = None) -> list[JobState]:
    """Every job's row by name, or only ``name``'s (the runner asks each
    second for each job)."""
    query = select(t.jobs).order_by(t.jobs.c.name)
    if name is not None:
        query = query.where(t.jobs.c.name == name)
    rows = await conn.execute(query)
    return [
        JobState(
            name=r.name,
            state=r.state,
            lease_owner=r.lease_owner,
            lease_until=_opt(r.lease_until),
            progress_done=r.progress_done,
            progress_total=r.progress_total,
            message=r.message,
            runs=r.runs,
            last_started=_opt(r.last_started),
            last_finished=_opt(r.last_finished),
            last_error=r.last_error,
            next_run=_opt(r.next_run),
            cursor=r.cursor,
        )
        for r in rows
    ]


async def wake(conn: AsyncConnection, name: str, at: datetime) -> None:
    """Make a job due now (e.g. drain right after a space is marked for it);
    a running pass is not disturbed, its next one comes right after it (a
    running pass has no next run until it ends, see ``acquire``)."""
    await conn.execute(
        update(t.jobs)
        .where(t.jobs.c.name == name, or_(t.jobs.c.next_run.is_(None), t.jobs.c.next_run > at))
        .values(next_run=at)
    )


async def lease_owner(conn: AsyncConnection, name: str) -> str | None:
    row = await conn.execute(select(t.jobs.c.lease_owner).where(t.jobs.c.name == name))
    value = row.scalar_one_or_none()
    return None if value is None else str(value)
