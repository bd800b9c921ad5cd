"""Read-only figures for monitoring (``/metrics``): user spaces by state and
the progress of the background jobs, as the metadata database has them (the
same in every process that shares it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from jointcloud.core.models import SpaceState
from jointcloud.meta import jobs as jobs_repo
from jointcloud.meta import spacestate
from jointcloud.meta.db import Database


@dataclass(frozen=True)
class JobProgress:
    name: str
    running: bool  # a process holds its (unexpired) lease and runs a pass now
    done: int  # progress of the running (else the last) pass
    total: int
    runs: int  # passes finished since the job was first registered
    failed: bool  # the last pass ended with an error
    last_finished: datetime | None


async def spaces_by_state(db: Database) -> dict[str, int]:
    """How many user spaces (of every user) are in each state; every known
    state is present, with 0 when no space is in it."""
    async with db.read() as conn:
        spaces = await spacestate.list_all(conn)
    counts = Counter(str(s.state) for s in spaces)
    return {**{str(state): 0 for state in SpaceState}, **counts}


async def job_progress(db: Database) -> list[JobProgress]:
    """Every registered job's progress, by name."""
    async with db.read() as conn:
        states = await jobs_repo.list_all(conn)
    ts = datetime.now(UTC)
    return [
        JobProgress(
            name=s.name,
            running=s.state == "running" and s.lease_until is not None and s.lease_until > ts,
            done=s.progress_done,
            total=s.progress_total,
            runs=s.runs,
            failed=bool(s.last_error),
            last_finished=s.last_finished,
        )
        for s in states
    ]
