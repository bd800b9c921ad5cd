"""Drain as a job (the work itself is ``core.drain``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from jointcloud.core.drain import DRAIN_BATCH, DrainReport
from jointcloud.jobs.base import JobResult, Progress


# One pass moving up to so many blocks off Draining spaces, of layouts after
# the one given: (batch, progress, after_layout=...).
class DrainBlocks(Protocol):
    def __call__(
        self, limit: int, progress: Progress, *, after_layout: int
    ) -> Awaitable[DrainReport]: ...


class DrainJob:
    name = "drain"

    def __init__(self, drain: DrainBlocks, interval: float, batch: int = DRAIN_BATCH) -> None:
        self.drain = drain
        self.interval = interval
        self.batch = batch
        # Where the next pass resumes (``DrainReport.cursor``); kept by this
        # process only: another one starts its sweep from the first layout.
        self.after = 0

    async def run_once(self, progress: Progress) -> JobResult:
        report = await self.drain(self.batch, progress, after_layout=self.after)
        self.after = report.cursor
        return JobResult(
            report.summary(),
            done=report.moved,
            total=report.total,
            # Come back soon while passes make progress, or while the sweep
            # has layouts left to look at: a block that cannot move now waits
            # for the interval (or an owner's action), not the blocks after it.
            more=report.remaining > 0 and (report.moved > 0 or report.cursor > 0),
            failed=report.failed,
        )
