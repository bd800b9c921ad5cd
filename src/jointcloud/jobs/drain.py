"""Drain as a job (the work itself is ``core.drain``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from jointcloud.core.drain import DRAIN_BATCH, DrainReport
from jointcloud.jobs.base import JobResult, Progress

# One pass moving up to so many blocks off Draining spaces: (batch, progress).
DrainBlocks = Callable[[int, Progress], Awaitable[DrainReport]]


class DrainJob:
    name = "drain"

    def __init__(self, drain: DrainBlocks, interval: float, batch: int = DRAIN_BATCH) -> None:
        self.drain = drain
        self.interval = interval
        self.batch = batch

    async def run_once(self, progress: Progress) -> JobResult:
        report = await self.drain(self.batch, progress)
        return JobResult(
            report.summary(),
            done=report.moved,
            total=report.total,
            # Come back soon only while passes make progress: a block that
            # cannot move now waits for the interval (or an owner's action).
            more=report.moved > 0 and report.remaining > 0,
        )
