"""Redundancy change as a job (the work itself is ``core.recode``). The
resume point is kept in the job's durable cursor, so a pass that stops with
work left continues where it was, in this process or another."""

from __future__ import annotations

import json
from dataclasses import dataclass

from jointcloud.core.jobstate import JobCursor
from jointcloud.core.recode import Recoder
from jointcloud.jobs.base import JobResult, Progress


@dataclass(frozen=True)
class RecodeServices:
    recoder: Recoder
    cursor: JobCursor  # this job's resume point


class RecodeJob:
    name = "recode"

    def __init__(self, services: RecodeServices, interval: float) -> None:
        self.recoder = services.recoder
        self.cursor = services.cursor
        self.interval = interval

    async def run_once(self, progress: Progress) -> JobResult:
        raw = await self.cursor.get()
        after = 0
        if raw:
            try:
                after = int(json.loads(raw).get("afterLayout", 0))
            except (ValueError, AttributeError, TypeError):
                after = 0
        report = await self.recoder.run_once(after, progress)
        await self.cursor.set(json.dumps({"afterLayout": report.cursor}) if report.cursor else None)
        return JobResult(
            report.summary(),
            done=report.layouts,
            total=report.layouts + report.failed,
            more=report.more,
            failed=report.failed,
        )
