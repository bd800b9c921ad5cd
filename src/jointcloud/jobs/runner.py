"""Runs jobs: leases in the metadata database, renewal, progress, back-off.

Several server processes may share one database: a job runs only in the
process holding its lease, which is renewed while the pass runs and expires
if that process dies, so another one takes over. The job rows are reached
through the core ``JobBoard`` service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta

import structlog

from jointcloud.core.jobstate import JobBoard
from jointcloud.core.leases import new_owner, renewed_by
from jointcloud.errors import OperationFailed
from jointcloud.jobs.base import Job, JobResult, Progress

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=60)
RENEW_EVERY = 10.0
ERROR_BACKOFF = 30.0
# The longest pause between two passes, whatever interval is set: "never"
# (1e12 s) would put the next run past the year 9999, the release would fail
# and the job would run again each time its lease ran out.
LONGEST_INTERVAL = timedelta(days=36_500).total_seconds()


class JobRunner:
    def __init__(self, board: JobBoard, jobs: Sequence[Job], owner: str | None = None) -> None:
        self.board = board
        self.jobs = {j.name: j for j in jobs}
        self.owner = owner or new_owner()
        self._stop = asyncio.Event()

    async def register(self) -> None:
        await self.board.register(self.jobs)

    async def run_now(self, name: str, progress: Progress | None = None) -> JobResult:
        """One pass of ``name`` under its lease (``jcs admin <job> --once``)."""
        job = self.jobs.get(name)
        if job is None:
            raise OperationFailed(f"unknown job {name!r}; jobs: {', '.join(sorted(self.jobs))}")
        await self.register()
        result = await self._pass(job, progress)
        if result is None:
            raise OperationFailed(f"job {name!r} is running in another process; try again later")
        return result

    async def _pass(self, job: Job, progress: Progress | None) -> JobResult | None:
        if not await self.board.acquire(job.name, self.owner, LEASE):
            return None
        state = {"done": 0, "total": 0, "message": ""}

        def report(done: int, total: int, message: str) -> None:
            state.update(done=done, total=total, message=message)
            if progress is not None:
                progress(done, total, message)

        running = asyncio.ensure_future(job.run_once(report))
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(job.name, state, running, lost))
        error: str | None = None
        result = JobResult("failed")
        try:
            try:
                result = await running
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not lost.is_set() or (current is not None and current.cancelling()):
                    raise  # this runner is stopping
                error = f"job {job.name!r} lost its lease to another process; this pass stopped"
                raise OperationFailed(error) from None
        except Exception as exc:
            error = error or f"{type(exc).__name__}: {exc}"
            log.warning("job pass failed", job=job.name, error=error)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            delay = ERROR_BACKOFF if error else (1.0 if result.more else job.interval)
            delay = min(delay, LONGEST_INTERVAL)
            await self.board.release(
                job.name,
                self.owner,
                next_in=timedelta(seconds=delay),
                message=error or result.message,
                error=error,
                done=result.done or int(state["done"]),  # type: ignore[call-overload]
                total=result.total or int(state["total"]),  # type: ignore[call-overload]
            )
        return result

    async def _keep_lease(
        self,
        name: str,
        state: dict[str, object],
        running: asyncio.Future[JobResult],
        lost: asyncio.Event,
    ) -> None:
        """Renew the lease while the pass runs. A lease another process took
        (a renewal found another owner) or about to run out (renewals failing
        or hanging, the database out of reach) stops the pass: the jobs are
        written to run alone, and two passes of one (two drains, two
        recodes) would do each other's work at once."""
        # The lease runs from the start of the renewal that set it.
        ends = time.monotonic() + LEASE.total_seconds()
        while True:
            await asyncio.sleep(RENEW_EVERY)
            started = time.monotonic()
            try:
                kept = await renewed_by(
                    self.board.renew(
                        name,
                        self.owner,
                        LEASE,
                        int(state["done"]),  # type: ignore[call-overload]
                        int(state["total"]),  # type: ignore[call-overload]
                        str(state["message"]),
                    ),
                    ends,
                )
            except Exception as exc:
                # The database out of reach for a moment: keep trying, or one
                # failed renewal would end renewals for the whole pass (and
                # its error would replace the pass's own result); but not
                # past the lease, which another process may hold by then.
                log.warning("job lease not renewed", job=name, error=repr(exc))
                if time.monotonic() + RENEW_EVERY < ends:
                    continue
                kept = False
            if kept:
                ends = started + LEASE.total_seconds()
                continue
            log.warning("job lease lost; stopping the pass", job=name)
            lost.set()
            running.cancel()
            return

    async def run_forever(self) -> None:
        """Run every job when it is due, until ``stop``; each job has its own
        loop, so a long pass of one (a big sync) does not hold up the others."""
        await self.register()
        loops = [asyncio.create_task(self._loop(job)) for job in self.jobs.values()]
        try:
            await self._stop.wait()
        finally:
            for loop in loops:
                loop.cancel()
            for loop in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await loop

    async def _loop(self, job: Job) -> None:
        wake: asyncio.Event | None = getattr(job, "wake", None)
        while not self._stop.is_set():
            try:
                due = await self.board.due(job.name)
            except Exception as exc:
                # The database out of reach (meta/outage.py): this job's loop
                # must outlive it, or the job would not run again until a
                # restart. Try again after the back-off.
                log.warning("job schedule unreadable", job=job.name, error=repr(exc))
                await self._sleep(ERROR_BACKOFF, None)
                continue
            woken = wake is not None and wake.is_set()
            if wake is not None:
                wake.clear()
            if due and not woken and not await self._has_work(job):
                due = False  # nothing to do: no lease, no pass, no row update
            if due or woken:
                started = time.monotonic()
                # A failure is recorded on the job row; the next try comes after the back-off.
                with contextlib.suppress(Exception):
                    await self._pass(job, None)
                log.debug("job pass", job=job.name, seconds=round(time.monotonic() - started, 3))
                continue
            await self._sleep(1.0, wake)

    async def _sleep(self, seconds: float, wake: asyncio.Event | None) -> None:
        """Wait ``seconds``, or less if stopped or woken."""
        waits = [asyncio.create_task(self._stop.wait())]
        if wake is not None:
            waits.append(asyncio.create_task(wake.wait()))
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    @staticmethod
    async def _has_work(job: Job) -> bool:
        """Jobs polled every second (sync) say cheaply whether a pass is needed."""
        check = getattr(job, "has_work", None)
        if check is None:
            return True
        try:
            return bool(await check())
        except Exception:
            return True  # let the pass itself report the problem

    def stop(self) -> None:
        self._stop.set()
