"""Drain as a job (the work itself is ``core.drain``)."""

from __future__ import annotations

from jointcloud.context import Context
from jointcloud.core.drain import DRAIN_BATCH, drain_once
from jointcloud.jobs.base import JobResult, Progress


class DrainJob:
    name = "drain"

    def __init__(self, ctx: Context, interval: float, batch: int = DRAIN_BATCH) -> None:
        self.ctx = ctx
        self.interval = interval
        self.batch = batch

    async def run_once(self, progress: Progress) -> JobResult:
        report = await drain_once(self.ctx.db, self.ctx.store, self.batch, progress)
        return JobResult(
            report.summary(),
            done=report.moved,
            total=report.total,
            # Come back soon only while passes make progress: a block that
            # cannot move now waits for the interval (or an owner's action).
            more=report.moved > 0 and report.remaining > 0,
        )
