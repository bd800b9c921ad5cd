"""Space health as a job (the work itself is ``core.health``)."""

from __future__ import annotations

from jointcloud.context import Context
from jointcloud.core.health import PROBE_TIMEOUT, check_health
from jointcloud.jobs.base import JobResult, Progress


class HealthJob:
    name = "health"

    def __init__(self, ctx: Context, interval: float, probe_timeout: float = PROBE_TIMEOUT) -> None:
        self.ctx = ctx
        self.interval = interval
        self.probe_timeout = probe_timeout

    async def run_once(self, progress: Progress) -> JobResult:
        report = await check_health(self.ctx.db, self.ctx.pool, self.probe_timeout, progress)
        n = len(report.results)
        return JobResult(report.summary(), done=n, total=n)
