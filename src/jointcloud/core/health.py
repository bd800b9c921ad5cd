"""Space health: probe every user space, record its latency, and move it
between ``Normal`` and ``Unavailable``.

A probe really touches the backend (stat of a key, a 1 KiB write, read back
and delete, the same steps as ``userSpace/test``) under a timeout. A space
that fails leaves placement until a later probe passes; ``Draining`` is the
owner's decision and a probe never changes it (its latency is still
recorded). State changes are compare-and-swap in the database, which is
what other processes read; this process's ``SpacePool`` records are updated
at once, so its reads prefer healthy spaces without waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from jointcloud.core.jobstate import JobBoard
from jointcloud.core.models import SpaceState, UserSpace
from jointcloud.core.userspaces import SpacePool, probe
from jointcloud.errors import (
    DomainError,
    OperationFailed,
    SpaceError,
    SpaceRefused,
    SpaceTestFailed,
)
from jointcloud.meta import spacestate
from jointcloud.meta.db import Database
from jointcloud.spaces.registry import check_remote

log = structlog.get_logger(__name__)

PROBE_TIMEOUT = 10.0
PROBE_CONCURRENCY = 8
RECORD_SECONDS = 60.0


@dataclass(frozen=True)
class ProbeResult:
    space: UserSpace  # as read before the probe
    latency_ms: float | None  # None: the probe failed
    error: str | None
    state: SpaceState  # after the probe

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed(self) -> bool:
        return self.state != self.space.state


@dataclass
class HealthReport:
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        n = len(self.results)
        text = f"probed {n} user space{'s' if n != 1 else ''}: {n - len(self.failed)} ok"
        if self.failed:
            text += f", {len(self.failed)} failing"
        changes = [
            f"{r.space.name} (id {r.space.user_space_id}) {r.space.state} -> {r.state}"
            + (f" ({r.error})" if r.error else "")
            for r in self.results
            if r.changed
        ]
        if changes:
            text += "; " + ", ".join(changes)
        return text


async def probe_space(
    pool: SpacePool, space: UserSpace, limit_s: float
) -> tuple[float | None, str | None]:
    """(latency in ms, None) or (None, why it failed), within ``limit_s`` seconds."""
    try:
        async with asyncio.timeout(limit_s):
            try:
                # Names may resolve differently now than when the backend was
                # opened: the network rules are checked again at every probe.
                await check_remote(space.storage, pool.rules)
            except SpaceRefused as exc:
                raise SpaceTestFailed(
                    f"user space test failed at step 'connect': {exc.message}"
                ) from exc
            try:
                return await probe(await pool.get(space)), None
            except DomainError:
                # The open backend may be stale (a Local root directory that went
                # away and is back, a dropped connection): a fresh one decides, and
                # replaces it if it works. A failing one stays, so that reads keep
                # skipping its blocks rather than failing to open it.
                try:
                    fresh = await pool.open(space, space.root_path)
                except SpaceError as exc:
                    raise SpaceTestFailed(
                        f"user space test failed at step 'connect': {exc.message}"
                    ) from exc
                try:
                    latency = await probe(fresh)
                finally:
                    await fresh.close()
                await pool.reopen(space.user_space_id)
                return latency, None
    except TimeoutError:
        return None, f"probe timed out after {limit_s:g} s"
    except DomainError as exc:
        return None, exc.message
    except Exception as exc:  # a backend bug must not stop the other probes
        return None, f"{type(exc).__name__}: {exc}"


async def _record(db: Database, report: HealthReport) -> dict[int, UserSpace]:
    """Latencies and state changes; the spaces as they are now."""
    async with db.write() as conn:
        for i, r in enumerate(report.results):
            sid = r.space.user_space_id
            if r.latency_ms is not None:
                await spacestate.record_latency(conn, sid, r.latency_ms)
            if r.changed and not await spacestate.swap_state(conn, sid, [r.space.state], r.state):
                # Changed meanwhile (drained, updated, deleted): theirs wins.
                report.results[i] = dataclasses.replace(r, state=SpaceState(r.space.state))
        return {s.user_space_id: s for s in await spacestate.list_all(conn)}


def next_state(current: str, ok: bool) -> SpaceState:
    if current == SpaceState.DRAINING:
        return SpaceState.DRAINING
    return SpaceState.NORMAL if ok else SpaceState.UNAVAILABLE


async def check_health(
    db: Database,
    pool: SpacePool,
    limit_s: float = PROBE_TIMEOUT,
    progress: Callable[[int, int, str], None] | None = None,
) -> HealthReport:
    """Probe every user space of every user once and record the outcome."""
    async with db.read() as conn:
        spaces = await spacestate.list_all(conn)
    limit = asyncio.Semaphore(PROBE_CONCURRENCY)
    done = 0

    async def one(space: UserSpace) -> ProbeResult:
        nonlocal done
        async with limit:
            latency, error = await probe_space(pool, space, limit_s)
        done += 1
        if progress is not None:
            progress(done, len(spaces), f"probed {space.name}")
        state = next_state(space.state, error is None)
        return ProbeResult(space, latency, error, state)

    results = await asyncio.gather(*(one(s) for s in spaces))
    report = HealthReport(list(results))
    try:
        # A pass must end, or no later one runs and a space stays marked as
        # it was (a review once saw a pass stuck after its probes, for 40
        # minutes, cause not found): its results are recorded within a bound.
        async with asyncio.timeout(RECORD_SECONDS):
            fresh = await _record(db, report)
    except TimeoutError:
        raise OperationFailed(
            f"the health pass could not record its results within {RECORD_SECONDS:g} s"
        ) from None
    for r in report.results:
        sid = r.space.user_space_id
        if r.changed:
            level = log.warning if r.state == SpaceState.UNAVAILABLE else log.info
            level(
                "user space state changed",
                space=sid,
                name=r.space.name,
                old=r.space.state,
                new=r.state,
                error=r.error,
            )
        if sid in fresh:
            pool.note(fresh[sid])
        else:
            await pool.forget(sid)
    return report


class HealthWaker:
    """``BlockStore.on_slow_space``: a read that outran a block whose space
    did not answer in time makes the health job due now (whichever process
    holds its lease sees that within a second), so that a cloud that hangs
    is probed and marked Unavailable in about ``PROBE_TIMEOUT`` rather than
    up to a whole interval later; until then every read of a block there
    waits its patience. At most one wake per ``WAKE_EVERY`` seconds."""

    WAKE_EVERY = 10.0

    def __init__(self, board: JobBoard) -> None:
        self.board = board
        self._quiet_until = 0.0
        self._waking: asyncio.Task[None] | None = None
        self.wakes = 0  # made so far, for tests and logs

    def note_slow_space(self, space_id: int) -> None:
        try:
            if time.monotonic() < self._quiet_until:
                return
            self._quiet_until = time.monotonic() + self.WAKE_EVERY
            log.info("a read outran a slow user space: health probe now", space=space_id)
            self._waking = asyncio.get_running_loop().create_task(self._wake())
        except Exception:  # the read must go on whatever happens here
            log.warning("could not ask for a health probe", exc_info=True)

    async def _wake(self) -> None:
        try:
            await self.board.wake("health")
            self.wakes += 1
        except Exception as exc:
            log.warning("could not ask for a health probe", error=repr(exc))

    async def close(self) -> None:
        if self._waking is not None:
            await asyncio.wait([self._waking])
