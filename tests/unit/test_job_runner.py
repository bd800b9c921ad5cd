"""Leases keep two runners on one database from running a job at once; the
job rows are reached through the core ``JobBoard`` (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from jointcloud.core.jobstate import JobBoard
from jointcloud.errors import MetadataUnavailable, OperationFailed
from jointcloud.jobs import runner as runner_module
from jointcloud.jobs.base import JobResult, Progress
from jointcloud.jobs.runner import JobRunner
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
async def db(database_url: str) -> Database:
    database = Database(database_url)
    await database.migrate()
    yield database  # type: ignore[misc]
    await database.close()


@pytest.fixture
def board(db: Database) -> JobBoard:
    return JobBoard(db)


async def test_lease_excludes_second_runner_until_released(board: JobBoard) -> None:
    job = Gate()
    a, b = JobRunner(board, [job], owner="a"), JobRunner(board, [job], owner="b")
    first = asyncio.create_task(a.run_now("gate"))
    await job.entered.wait()
    with pytest.raises(OperationFailed, match="running in another process"):
        await b.run_now("gate")
    [state] = await board.states()
    assert state.state == "running" and state.lease_owner == "a"
    job.release.set()
    assert (await first).message == "done"
    [state] = await board.states()
    assert state.state == "idle" and state.runs == 1 and state.progress_done == 2
    assert state.next_run is not None and state.next_run > now() + timedelta(minutes=50)
    await b.run_now("gate")  # free again
    assert job.passes == 2


async def test_expired_lease_is_taken_over(db: Database) -> None:
    job = Gate()
    job.release.set()
    runner = JobRunner(JobBoard(db), [job], owner="b")
    await runner.register()
    async with db.write() as conn:  # a crashed process left its lease behind
        await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.name == "gate")
            .values(lease_owner="dead", lease_until=now() - timedelta(seconds=1), state="running")
        )
    assert (await runner.run_now("gate")).message == "done"


async def test_failure_is_recorded_and_retried_later(board: JobBoard) -> None:
    runner = JobRunner(board, [Boom()], owner="a")
    with pytest.raises(RuntimeError):
        await runner.run_now("boom")
    [state] = await board.states()
    assert state.state == "idle" and state.lease_owner is None
    assert state.last_error == "RuntimeError: disk on fire"
    assert state.next_run is not None and state.next_run < now() + timedelta(minutes=5)


class Rare:
    """A job configured never to run again (``JCS_SCRUB_INTERVAL_SECONDS=1e12``)."""

    name = "rare"
    interval = 1e12

    async def run_once(self, progress: Progress) -> JobResult:
        return JobResult("done")


async def test_an_interval_of_never_is_kept_without_overflowing(board: JobBoard) -> None:
    """Found by the time review: now + 1e12 s is past the year 9999, so the
    pass could not be released; the job kept its lease and ran again each
    time the lease ran out (every minute) instead of never."""
    assert (await JobRunner(board, [Rare()], owner="a").run_now("rare")).message == "done"
    [state] = await board.states()
    assert state.state == "idle" and state.lease_owner is None and state.last_error is None
    assert state.next_run is not None and state.next_run > now() + timedelta(days=36_000)
    assert not await board.due("rare")


async def test_unknown_job_is_named(board: JobBoard) -> None:
    with pytest.raises(OperationFailed, match="unknown job 'nope'"):
        await JobRunner(board, [Boom()]).run_now("nope")


async def test_board_cursor_wake_and_due(board: JobBoard) -> None:
    await board.register(["a", "b"])
    cursor = board.cursor("a")
    assert await cursor.get() is None
    await cursor.set('{"after": 7}')
    assert await cursor.get() == '{"after": 7}' and await board.get_cursor("b") is None
    await cursor.set(None)
    assert await cursor.get() is None
    assert await board.due("a") and await board.due("unknown")  # never run: due
    assert await board.acquire("a", "me", timedelta(minutes=1))
    assert not await board.acquire("a", "other", timedelta(minutes=1))
    assert not await board.due("a")  # a live lease
    assert await board.renew("a", "me", timedelta(minutes=1), 1, 2, "half")
    assert not await board.renew("a", "other", timedelta(minutes=1), 0, 0, "")
    await board.release(
        "a", "me", next_in=timedelta(hours=1), message="ok", error=None, done=2, total=2
    )
    state = await board.state("a")
    assert state is not None and state.lease_owner is None and state.runs == 1
    assert not await board.due("a")  # next run in an hour
    await board.wake("a")
    assert await board.due("a")


async def test_a_wake_during_a_pass_brings_the_next_pass_right_after_it(board: JobBoard) -> None:
    """``jcs package set-redundancy`` wakes recode while a pass it woke a moment
    before still runs: that second change must not wait for the interval."""
    job = Gate()
    runner = JobRunner(board, [job], owner="a")
    first = asyncio.create_task(runner.run_now("gate"))
    await job.entered.wait()
    await board.wake("gate")
    job.release.set()
    await first
    state = await board.state("gate")
    assert state is not None and state.state == "idle" and state.runs == 1
    assert await board.due("gate")  # not in an hour (the interval)
    job.release.clear()
    second = asyncio.create_task(runner.run_now("gate"))
    await job.entered.wait()
    job.release.set()
    await second
    assert not await board.due("gate")  # no wake this time: the interval again


async def test_a_job_loop_outlives_an_unreadable_schedule(
    board: JobBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database out of reach for a while (its schedule cannot be read)
    must not end a job's loop: the job runs once the database answers."""
    monkeypatch.setattr(runner_module, "ERROR_BACKOFF", 0.01)
    failures = 2
    readable = board.due

    async def due(name: str) -> bool:
        nonlocal failures
        if failures:
            failures -= 1
            raise MetadataUnavailable("the metadata database did not answer within 30 s")
        return await readable(name)

    monkeypatch.setattr(board, "due", due)
    job = Gate()
    job.release.set()
    runner = JobRunner(board, [job], owner="a")
    running = asyncio.create_task(runner.run_forever())
    try:
        await asyncio.wait_for(job.entered.wait(), 30)
    finally:
        runner.stop()
        await running
    assert failures == 0 and job.passes == 1


async def test_a_failed_lease_renewal_does_not_end_the_pass(
    board: JobBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One renewal that fails (the database out of reach for a moment) must
    not end the renewals: the lease would lapse under a running pass, and
    the failure would replace the pass's own result."""
    monkeypatch.setattr(runner_module, "RENEW_EVERY", 0.01)
    job = Gate()
    renewals = 0
    renew = board.renew

    async def flaky(*args: object) -> bool:
        nonlocal renewals
        renewals += 1
        if renewals == 1:
            raise MetadataUnavailable("the metadata database did not answer within 30 s")
        if renewals == 3:  # renewals went on after the failure: let the pass end
            job.release.set()
        return await renew(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(board, "renew", flaky)
    runner = JobRunner(board, [job], owner="a")
    await asyncio.wait_for(runner.run_now("gate"), 30)
    state = await board.state("gate")
    assert state is not None and state.state == "idle" and state.runs == 1
    assert state.last_error is None and state.message == "done"


class Cancellable(Gate):
    """A Gate that notes whether it was stopped mid-pass."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    async def run_once(self, progress: Progress) -> JobResult:
        try:
            return await super().run_once(progress)
        except asyncio.CancelledError:
            self.stopped = True
            raise


async def test_a_pass_whose_lease_another_process_took_stops(
    db: Database, board: JobBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review ran two scrubs at once: a process took the lease (it
    judged the holder dead), and the holder only logged "lease lost" and
    went on to the end of its pass."""
    monkeypatch.setattr(runner_module, "RENEW_EVERY", 0.01)
    job = Cancellable()
    runner = JobRunner(board, [job], owner="a")
    first = asyncio.create_task(runner.run_now("gate"))
    await job.entered.wait()
    async with db.write() as conn:  # another process takes the lease
        await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.name == "gate")
            .values(lease_owner="b", lease_until=now() + timedelta(minutes=1))
        )
    with pytest.raises(OperationFailed, match="lost its lease to another process"):
        await asyncio.wait_for(first, 30)
    assert job.stopped and job.passes == 1
    state = await board.state("gate")
    assert state is not None and state.lease_owner == "b"  # the loser's release took nothing


@pytest.mark.parametrize("renewals", ["fail", "hang"])
async def test_a_pass_that_cannot_renew_past_its_lease_stops(
    board: JobBoard, monkeypatch: pytest.MonkeyPatch, renewals: str
) -> None:
    """Renewals failing for as long as the lease, or one that neither
    answers nor fails (the database stalled; it was waited for past the
    lease's end): another process may hold the lease by then, so the pass
    stops rather than run beside it."""
    monkeypatch.setattr(runner_module, "RENEW_EVERY", 0.01)
    monkeypatch.setattr(runner_module, "LEASE", timedelta(seconds=0.3))
    job = Cancellable()
    never = asyncio.Event()

    async def unreachable(*args: object) -> bool:
        if renewals == "hang":
            await never.wait()
        raise MetadataUnavailable("the metadata database did not answer within 30 s")

    monkeypatch.setattr(board, "renew", unreachable)
    runner = JobRunner(board, [job], owner="a")
    with pytest.raises(OperationFailed, match="lost its lease"):
        await asyncio.wait_for(runner.run_now("gate"), 30)
    assert job.stopped


async def test_a_shutdown_as_the_lease_is_lost_stays_a_shutdown(
    board: JobBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops in the very instant the pass is stopped for its lost
    lease: the pass must end as stopped (cancelled), not as a failure."""
    monkeypatch.setattr(runner_module, "RENEW_EVERY", 0.01)
    passing: list[asyncio.Task[JobResult]] = []

    class StoppedMeanwhile(Cancellable):
        async def run_once(self, progress: Progress) -> JobResult:
            try:
                return await super().run_once(progress)
            finally:
                passing[0].cancel()  # the shutdown, as the lease is lost

    async def taken(*args: object) -> bool:
        return False  # another process holds the lease now

    monkeypatch.setattr(board, "renew", taken)
    job = StoppedMeanwhile()
    runner = JobRunner(board, [job], owner="a")
    passing.append(asyncio.create_task(runner.run_now("gate")))
    with pytest.raises(asyncio.CancelledError):
        await passing[0]
    assert job.stopped
