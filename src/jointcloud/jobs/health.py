"""Space health as a job (the work itself is ``core.health``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from jointcloud.core.health import PROBE_TIMEOUT, HealthReport
from jointcloud.jobs.base import JobResult, Progress

# One probe of every user space: (time limit per probe in seconds, progress).
ProbeSpaces = Callable[[float, Progress], Awaitable[HealthReport]]


class HealthJob:
    name = "health"

    def __init__(
        self, probe: ProbeSpaces, interval: float, probe_timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.probe = probe
        self.interval = interval
        self.probe_timeout = probe_timeout

    async def run_once(self, progress: Progress) -> JobResult:
        report = await self.probe(self.probe_timeout, progress)
        n = len(report.results)
        return JobResult(report.summary(), done=n, total=n)
