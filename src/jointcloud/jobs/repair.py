"""Repair as a job: work through the repair queue, and scan for blocks on
Unavailable spaces (the work itself is ``core.repair``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from jointcloud.core.repair import (
    FAILED,
    GONE,
    HEALTHY,
    NO_SPACES,
    UNRECOVERABLE,
    RepairItem,
    RepairOutcome,
    RepairService,
)
from jointcloud.jobs.base import JobResult, Progress

BATCH = 32  # layouts per pass
CONCURRENCY = 4  # layouts rebuilt at once
SCAN_EVERY = 300.0  # seconds between scans for blocks on Unavailable spaces
SHOWN = 5  # problems named in the pass message


@dataclass(frozen=True)
class RepairResult(JobResult):
    outcomes: tuple[RepairOutcome, ...] = ()
    queued_by_scan: int = 0


class RepairJob:
    name = "repair"

    def __init__(
        self,
        repair: RepairService,
        interval: float,
        *,
        batch: int = BATCH,
        concurrency: int = CONCURRENCY,
        scan_every: float = SCAN_EVERY,
    ) -> None:
        self.repair = repair
        self.interval = interval
        self.batch = batch
        self.concurrency = concurrency
        self.scan_every = scan_every
        self._last_scan: float | None = None

    async def run_once(self, progress: Progress) -> RepairResult:
        service = self.repair
        await service.flush()  # what degraded reads of this process reported
        scanned = 0
        if self._last_scan is None or time.monotonic() - self._last_scan >= self.scan_every:
            progress(0, 0, "scanning for blocks on Unavailable user spaces")
            scanned = await service.scan_unavailable()
            self._last_scan = time.monotonic()
        items = await service.due(self.batch)
        outcomes: list[RepairOutcome] = []
        limit = asyncio.Semaphore(self.concurrency)

        async def one(item: RepairItem) -> None:
            async with limit:
                try:
                    outcome = await service.repair(item.layout_id)
                except Exception as exc:
                    outcome = RepairOutcome(
                        item.layout_id,
                        FAILED,
                        f"repair of layout {item.layout_id} failed: {type(exc).__name__}: {exc}",
                    )
                await service.settle(item, outcome)
            outcomes.append(outcome)
            progress(len(outcomes), len(items), outcome.message)

        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
        more = bool(await service.due(1))
        left = await service.queued()
        outcomes.sort(key=lambda o: o.layout_id)
        return RepairResult(
            _message(outcomes, scanned, left),
            done=len(outcomes),
            total=len(items),
            more=more,
            failed=sum(1 for o in outcomes if not o.finished),
            outcomes=tuple(outcomes),
            queued_by_scan=scanned,
        )


def _message(outcomes: list[RepairOutcome], scanned: int, left: int) -> str:
    def count(status: str) -> int:
        return sum(1 for o in outcomes if o.status == status)

    blocks = sum(len(o.repaired) for o in outcomes)
    repaired = sum(1 for o in outcomes if o.repaired)
    parts = [
        f"repaired {blocks} block{'s' if blocks != 1 else ''} in {repaired} "
        f"layout{'s' if repaired != 1 else ''}",
    ]
    if count(HEALTHY) or count(GONE):
        parts.append(f"{count(HEALTHY)} already whole, {count(GONE)} gone")
    problems = [o for o in outcomes if not o.finished]
    if problems:
        kinds = {UNRECOVERABLE: "cannot repair", NO_SPACES: "too few spaces", FAILED: "failed"}
        summary = ", ".join(
            f"{count(status)} {label}" for status, label in kinds.items() if count(status)
        )
        named = "; ".join(o.message for o in problems[:SHOWN])
        more = f"; … {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        parts.append(f"{summary} (retried later): {named}{more}")
    if scanned:
        parts.append(
            f"{scanned} layout{'s' if scanned != 1 else ''} queued with blocks on "
            "Unavailable user spaces"
        )
    parts.append(f"{left} in the queue" if left else "queue empty")
    if not outcomes and not scanned:
        parts[0] = "nothing due"
    return "; ".join(parts)
