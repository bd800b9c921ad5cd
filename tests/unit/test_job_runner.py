"""Leases keep two runners on one database from running a job at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from jointcloud.errors import OperationFailed
from jointcloud.jobs.base import JobResult, Progress
from jointcloud.jobs.runner import JobRunner
from jointcloud.meta import jobs as repo
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now


class Gate:
    """A job that blocks until released and counts its passes."""

    name = "gate"
    interval = 3600.0

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.passes = 0

    async def run_once(self, progress: Progress) -> JobResult:
        self.passes += 1
        progress(1, 2, "halfway")
        self.entered.set()
        await self.release.wait()
        return JobResult("done", done=2, total=2)


class Boom:
    name = "boom"
    interval = 3600.0

    async def run_once(self, progress: Progress) -> JobResult:
        raise RuntimeError("disk on fire")


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await database.migrate()
    yield database  # type: ignore[misc]
    await database.close()


async def test_lease_excludes_second_runner_until_released(db: Database) -> None:
    job = Gate()
    a, b = JobRunner(db, [job], owner="a"), JobRunner(db, [job], owner="b")
    first = asyncio.create_task(a.run_now("gate"))
    await job.entered.wait()
    with pytest.raises(OperationFailed, match="running in another process"):
        await b.run_now("gate")
    async with db.read() as conn:
        [state] = await repo.list_all(conn)
    assert state.state == "running" and state.lease_owner == "a"
    job.release.set()
    assert (await first).message == "done"
    async with db.read() as conn:
        [state] = await repo.list_all(conn)
    assert state.state == "idle" and state.runs == 1 and state.progress_done == 2
    assert state.next_run is not None and state.next_run > now() + timedelta(minutes=50)
    await b.run_now("gate")  # free again
    assert job.passes == 2


async def test_expired_lease_is_taken_over(db: Database) -> None:
    job = Gate()
    job.release.set()
    runner = JobRunner(db, [job], owner="b")
    await runner.register()
    async with db.write() as conn:  # a crashed process left its lease behind
        await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.name == "gate")
            .values(lease_owner="dead", lease_until=now() - timedelta(seconds=1), state="running")
        )
    assert (await runner.run_now("gate")).message == "done"


async def test_failure_is_recorded_and_retried_later(db: Database) -> None:
    runner = JobRunner(db, [Boom()], owner="a")
    with pytest.raises(RuntimeError):
        await runner.run_now("boom")
    async with db.read() as conn:
        [state] = await repo.list_all(conn)
    assert state.state == "idle" and state.lease_owner is None
    assert state.last_error == "RuntimeError: disk on fire"
    assert state.next_run is not None and state.next_run < now() + timedelta(minutes=5)


async def test_unknown_job_is_named(db: Database) -> None:
    with pytest.raises(OperationFailed, match="unknown job 'nope'"):
        await JobRunner(db, [Boom()]).run_now("nope")
