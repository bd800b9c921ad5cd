"""Scrub: read every stored block back and check its integrity.

Layouts are visited in id order from a resume point, each block checked with
``verify_block`` (size, then every chunk's GCM tag) at no more than the
configured rate. Every layout with a missing or corrupt block is queued for
repair. Blocks on Unavailable spaces are not touched (the repair job's scan
moves them); blocks that cannot be reached right now are counted, not queued
(a space that stays down is the health check's business).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jointcloud.core.repair import CORRUPT, MISSING, UNREACHABLE, RepairService, Throttle
from jointcloud.meta import sweeps
from jointcloud.meta.db import Database

MB = 1_000_000


class RateLimiter:
    """At most ``rate`` bytes per second on average; no burst allowance.
    ``clock`` and ``sleep`` are injectable (a test drives a fake clock)."""

    def __init__(
        self,
        bytes_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may be read."""
        if self.rate <= 0 or amount <= 0:
            return
        now = self._clock()
        start = max(self._next, now)
        self._next = start + amount / self.rate
        if start > now:
            await self._sleep(start - now)


@dataclass(frozen=True)
class BadBlock:
    layout_id: int
    index: int
    space_id: int
    key: str
    state: str  # missing | corrupt
    detail: str = ""

    def __str__(self) -> str:
        return (
            f"layout {self.layout_id} block {self.index} "
            f"(space {self.space_id}, {self.key}): {self.state}"
        )


@dataclass
class ScrubReport:
    layouts: int = 0
    blocks: int = 0  # blocks checked
    bytes: int = 0
    bad: list[BadBlock] = field(default_factory=list)
    unreachable: int = 0  # blocks not checked: their space is down
    queued: int = 0  # layouts newly queued for repair
    last_layout: int = 0  # resume after this one
    complete: bool = False  # no layout left after ``last_layout``

    @property
    def missing(self) -> int:
        return sum(1 for b in self.bad if b.state == MISSING)

    @property
    def corrupt(self) -> int:
        return sum(1 for b in self.bad if b.state == CORRUPT)


class Scrubber:
    def __init__(self, db: Database, repair: RepairService, mbps: float) -> None:
        self.db = db
        self.repair = repair
        self.limiter = RateLimiter(mbps * MB)

    async def scrub(
        self,
        after: int,
        *,
        max_layouts: int = 1000,
        max_seconds: float = 60.0,
        progress: Callable[[int, int, str], None] | None = None,
        page: int = 200,
    ) -> ScrubReport:
        """Check layouts above ``after`` until ``max_layouts`` or ``max_seconds``
        (whichever comes first) or the end."""
        report = ScrubReport(last_layout=after)
        deadline = time.monotonic() + max_seconds
        while report.layouts < max_layouts and time.monotonic() < deadline:
            async with self.db.read() as conn:
                ids = await sweeps.live_layout_ids(
                    conn, report.last_layout, min(page, max_layouts - report.layouts)
                )
            if not ids:
                report.complete = True
                break
            for layout_id in ids:
                await self._one(layout_id, report)
                report.last_layout = layout_id
                report.layouts += 1
                if progress is not None:
                    progress(
                        report.layouts,
                        0,
                        f"layout {layout_id}: {report.blocks} blocks checked, "
                        f"{len(report.bad)} bad",
                    )
                if time.monotonic() >= deadline:
                    break
        if not report.complete:
            # Cheap look-ahead, so a sweep that just ended says so now.
            async with self.db.read() as conn:
                report.complete = not await sweeps.live_layout_ids(conn, report.last_layout, 1)
        return report

    async def _one(self, layout_id: int, report: ScrubReport) -> None:
        health = await self.repair.inspect(layout_id, throttle=self._throttle(report))
        bad = []
        for b in health.blocks:
            if b.state == UNREACHABLE:
                report.unreachable += 1
                continue
            report.blocks += 1
            if b.state in (MISSING, CORRUPT):
                bad.append(BadBlock(layout_id, b.index, b.space_id, b.key, b.state, b.detail))
        if bad:
            report.bad.extend(bad)
            states = ", ".join(f"block {b.index} {b.state}" for b in bad)
            report.queued += await self.repair.enqueue([layout_id], f"scrub: {states}")

    def _throttle(self, report: ScrubReport) -> Throttle:
        async def take(amount: int) -> None:
            report.bytes += amount
            await self.limiter.take(amount)

        return take
