"""Redundancy change as a job (the work itself is ``core.recode``). The
resume point is kept in the job's durable cursor, so a pass that stops with
work left continues where it was, in this process or another."""

from __future__ import annotations

import json

from jointcloud.context import Context
from jointcloud.core.recode import Recoder
from jointcloud.jobs.base import JobResult, Progress
from jointcloud.meta import jobs as jobs_repo


class RecodeJob:
    name = "recode"

    def __init__(self, ctx: Context, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.recoder = Recoder(ctx.db, ctx.store)

    async def run_once(self, progress: Progress) -> JobResult:
        async with self.ctx.db.read() as conn:
            raw = await jobs_repo.get_cursor(conn, self.name)
        after = 0
        if raw:
            try:
                after = int(json.loads(raw).get("afterLayout", 0))
            except (ValueError, AttributeError, TypeError):
                after = 0
        report = await self.recoder.run_once(after, progress)
        async with self.ctx.db.write() as conn:
            await jobs_repo.set_cursor(
                conn,
                self.name,
                json.dumps({"afterLayout": report.cursor}) if report.cursor else None,
            )
        return JobResult(
            report.summary(),
            done=report.layouts,
            total=report.layouts + report.failed,
            more=report.more,
        )
