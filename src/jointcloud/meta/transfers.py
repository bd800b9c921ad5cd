"""Transfer tasks and their per-file records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import (
    FileRecord,
    FileState,
    TaskKind,
    TaskState,
    TransferProgress,
    TransferTask,
)
from jointcloud.meta import tables as t
from jointcloud.meta.rows import aware, now

T = t.transfer_tasks
F = t.transfer_files
FINAL = (TaskState.CANCELLED,)


def _opt(ts: datetime | None) -> datetime | None:
    return None if ts is None else aware(ts)


def _finished(r: Any) -> datetime | None:
    """When the last run ended. A cancelled run whose runner went away
    before closing it (killed within a second of the cancel) ended at the
    latest when the runner's lease did."""
    finished, held_until = _opt(r.last_finish_at), _opt(r.lease_until)
    started = _opt(r.last_run_at)
    if (
        r.state == TaskState.CANCELLED
        and r.run_open
        and held_until is not None
        and held_until <= now()
        and (finished is None or (started is not None and finished < started))
    ):
        return held_until
    return finished


def _task(r: Any) -> TransferTask:
    return TransferTask(
        task_id=r.id,
        user_id=r.user_id,
        kind=r.kind,
        spec=json.loads(r.spec),
        state=r.state,
        run_no=r.run_no,
        run_open=bool(r.run_open),
        progress=TransferProgress(
            files_total=r.files_total,
            files_done=r.files_done,
            files_failed=r.files_failed,
            files_skipped=r.files_skipped,
            bytes_total=r.bytes_total,
            bytes_done=r.bytes_done,
        ),
        last_error=r.last_error,
        result=None if r.result is None else json.loads(r.result),
        create_time=aware(r.created_at),
        last_run_time=_opt(r.last_run_at),
        last_finish_time=_finished(r),
        next_run_time=_opt(r.next_run_at),
        lease_owner=r.lease_owner,
        lease_until=_opt(r.lease_until),
    )


def _counters(p: TransferProgress) -> dict[str, int]:
    return {
        "files_total": p.files_total,
        "files_done": p.files_done,
        "files_failed": p.files_failed,
        "files_skipped": p.files_skipped,
        "bytes_total": p.bytes_total,
        "bytes_done": p.bytes_done,
    }


async def create(
    conn: AsyncConnection,
    user_id: int,
    kind: TaskKind,
    spec: dict[str, Any],
    ts: datetime,
    next_run: datetime | None,
    state: TaskState = TaskState.PENDING,
) -> TransferTask:
    res = await conn.execute(
        insert(T).values(
            user_id=user_id,
            kind=kind,
            spec=json.dumps(spec),
            state=state,
            run_no=0,
            run_open=False,
            last_error=None,
            created_at=ts,
            next_run_at=next_run,
            **_counters(TransferProgress()),
        )
    )
    task_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    found = await get(conn, task_id)
    assert found is not None
    return found


async def get(
    conn: AsyncConnection, task_id: int, user_id: int | None = None
) -> TransferTask | None:
    q = select(T).where(T.c.id == task_id)
    if user_id is not None:
        q = q.where(T.c.user_id == user_id)
    row = (await conn.execute(q)).first()
    return None if row is None else _task(row)


async def list_for_user(
    conn: AsyncConnection, user_id: int, *, after: int = 0, limit: int | None = None
) -> list[TransferTask]:
    """The user's tasks with an id above ``after``, by id, at most ``limit``."""
    q = select(T).where(T.c.user_id == user_id, T.c.id > after).order_by(T.c.id)
    if limit is not None:
        q = q.limit(limit)
    return [_task(r) for r in await conn.execute(q)]


async def count_scheduled(conn: AsyncConnection, user_id: int) -> int:
    """The user's tasks the scheduler will still run: not cancelled, with a
    run open or a next run set (a recurring task between its runs too).
    Counted under a lock of the user's row, so that concurrent creates in
    the same transaction's position count one after the other (under READ
    COMMITTED 40 at once each counted 90 and made 105, found by review)."""
    await conn.execute(
        select(t.users.c.id).where(t.users.c.id == user_id).with_for_update(key_share=True)
    )
    q = (
        select(func.count())
        .select_from(T)
        .where(
            T.c.user_id == user_id,
            T.c.state.not_in(FINAL),
            T.c.run_open.is_(True) | T.c.next_run_at.is_not(None),
        )
    )
    return int((await conn.execute(q)).scalar_one())


async def delete_finished(conn: AsyncConnection, before: datetime) -> int:
    """Remove tasks that finished before ``before`` with nothing left to
    run (a one-shot task done or failed for good, or a cancelled one), with
    their files' records; returns how many."""
    # A cancelled run left open (its runner died before it closed it) ended
    # with its lease, as ``_finished`` shows it: its finish time is an
    # earlier run's, or none (a task created a week ago went at once).
    ended = func.coalesce(
        case((T.c.run_open.is_(True), T.c.lease_until)), T.c.last_finish_at, T.c.created_at
    )
    res = await conn.execute(
        delete(T).where(
            # A cancelled task's run left open by an older release counts
            # as ended once no runner holds it.
            T.c.run_open.is_(False)
            | ((T.c.state == TaskState.CANCELLED) & ~_held_by_a_runner(now())),
            (T.c.state == TaskState.CANCELLED)
            | (T.c.state.in_((TaskState.SUCCEEDED, TaskState.FAILED)) & T.c.next_run_at.is_(None)),
            ended < before,
        )
    )
    return int(res.rowcount)


def _ended_at(ts: datetime) -> ColumnElement[Any]:
    """A run's finish time: ``ts``, but not before the run's start, which
    another server's clock may have set (one that began a run this one
    resumed, or stopped by a cancel): a finish before the start reads as
    an earlier run's (``_finished``, and ``follow`` waits for ever)."""
    return case((T.c.last_run_at > ts, T.c.last_run_at), else_=ts)


def _held_by_a_runner(ts: datetime) -> ColumnElement[bool]:
    return and_(T.c.lease_owner.is_not(None), T.c.lease_until > ts)


async def open_run_specs(conn: AsyncConnection, user_id: int) -> list[tuple[int, dict[str, Any]]]:
    """(task id, stored spec) of the user's tasks whose run is open: running,
    paused until its window opens again, or left by a dead server to be
    resumed; a cancelled one only while a runner still holds it (it stops
    within a second of the cancel, and closes the run then)."""
    q = select(T.c.id, T.c.spec).where(
        T.c.user_id == user_id,
        T.c.run_open.is_(True),
        (T.c.state != TaskState.CANCELLED) | _held_by_a_runner(now()),
    )
    return [(int(r.id), json.loads(r.spec)) for r in await conn.execute(q)]


async def open_runs(conn: AsyncConnection) -> list[TransferTask]:
    """Tasks whose run is open and running: held by a runner, or orphaned by
    a dead process (to be resumed). As many as runs are going on, found by
    the index on ``state`` (0022), not among every task kept."""
    q = select(T).where(T.c.state == TaskState.RUNNING, T.c.run_open.is_(True))
    return [_task(r) for r in await conn.execute(q.order_by(T.c.id))]


async def due(
    conn: AsyncConnection,
    ts: datetime,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> list[TransferTask]:
    """At most ``limit`` tasks whose next run time has come, past ``after``
    (the next run time and id of the last one of the page before). Longest
    waiting first, then by ID: a few recurring tasks that are always due
    again (every second) kept every later task, anyone's, from ever
    running. A page is read from the index on ``next_run_at``: a backlog of
    due tasks, or the finished ones kept for a week, are not read each time
    a runner looks for work (a scale review: every second)."""
    q = select(T).where(T.c.next_run_at <= ts, T.c.state.not_in(FINAL))
    if after is not None:
        at, task_id = after
        q = q.where(T.c.next_run_at >= at, or_(T.c.next_run_at > at, T.c.id > task_id))
    q = q.order_by(T.c.next_run_at, T.c.id).limit(limit)
    return [_task(r) for r in await conn.execute(q)]


async def claim(
    conn: AsyncConnection,
    task: TransferTask,
    owner: str,
    until: datetime,
    ts: datetime,
) -> bool:
    """Take the task's lease (compare-and-set on the lease we saw) and start
    or resume its run."""
    values: dict[str, Any] = {
        "lease_owner": owner,
        "lease_until": until,
        "state": TaskState.RUNNING,
    }
    if not task.run_open:
        values.update(
            run_no=T.c.run_no + 1,
            run_open=True,
            last_run_at=ts,
            last_error=None,
            **_counters(TransferProgress()),
        )
    same_lease = (
        T.c.lease_owner.is_(None)
        if task.lease_owner is None
        else (T.c.lease_owner == task.lease_owner)
    )
    # The run number too: another process may have claimed and finished a
    # whole run since ``task`` was read (its lease is gone again); that run
    # is done, and this claim would start one more at once.
    res = await conn.execute(
        update(T)
        .where(
            T.c.id == task.task_id,
            T.c.state.not_in(FINAL),
            T.c.run_no == task.run_no,
            same_lease,
        )
        .values(**values)
    )
    return res.rowcount == 1


async def renew(
    conn: AsyncConnection,
    task_id: int,
    owner: str,
    until: datetime,
    progress: TransferProgress | None,
    last_error: str | None,
) -> TaskState | None:
    """Extend our lease and save the counters (None: keep the saved ones);
    the task's state afterwards (``cancelled`` tells the runner to stop), or
    None if the lease is lost."""
    counters = {} if progress is None else _counters(progress)
    await conn.execute(
        update(T)
        .where(T.c.id == task_id, T.c.lease_owner == owner, T.c.state == TaskState.RUNNING)
        .values(lease_until=until, last_error=last_error, **counters)
    )
    row = (await conn.execute(select(T.c.state, T.c.lease_owner).where(T.c.id == task_id))).first()
    if row is None:
        return None
    if row.state != TaskState.RUNNING:
        return TaskState(row.state)
    return TaskState.RUNNING if row.lease_owner == owner else None


async def finish(
    conn: AsyncConnection,
    task_id: int,
    owner: str,
    *,
    state: TaskState,
    ts: datetime,
    progress: TransferProgress,
    last_error: str | None,
    next_run: datetime | None,
    result: dict[str, Any] | None = None,
    run_open: bool = False,
) -> None:
    """End (or pause, with ``run_open``) our run; a task cancelled meanwhile
    stays cancelled, but its counters are saved."""
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_until": None,
        "next_run_at": next_run,
        "last_error": last_error,
        "run_open": run_open,
        **_counters(progress),
    }
    if not run_open:
        values["last_finish_at"] = _ended_at(ts)
    if result is not None:
        values["result"] = json.dumps(result)
    base = and_(T.c.id == task_id, T.c.lease_owner == owner)
    await conn.execute(update(T).where(base, T.c.state.not_in(FINAL)).values(state=state, **values))
    # Cancelled meanwhile: its run ends here whatever this runner meant (a
    # pause, a shutdown), or the run would stay open on a task never run
    # again, holding its spaces (``open_run_specs``) and kept from GC.
    values.update(run_open=False, last_finish_at=_ended_at(ts))
    await conn.execute(update(T).where(base, T.c.state.in_(FINAL)).values(**values))


async def cancel(conn: AsyncConnection, task_id: int, user_id: int) -> bool:
    """Cancel the task unless nothing is left to stop (cancelled already, or
    finished with no run to come: its outcome stays, though it finished
    after the caller last looked; found by review). Whether it exists."""
    nothing_left = or_(
        T.c.state == TaskState.CANCELLED,
        and_(T.c.state.in_([TaskState.SUCCEEDED, TaskState.FAILED]), T.c.next_run_at.is_(None)),
    )
    mine = and_(T.c.id == task_id, T.c.user_id == user_id)
    # Its run ends here too: a run paused outside its window (or left open
    # by a stopped server) has no runner to close it, and a task whose run
    # is open is never forgotten (``delete_finished``). A runner that holds
    # it closes it again when it stops.
    ts = now()
    res = await conn.execute(
        update(T)
        .where(mine, ~nothing_left)
        .values(
            state=TaskState.CANCELLED,
            next_run_at=None,
            # A runner that holds the run closes it when it has stopped:
            # until then its copies go on, and its spaces stay held.
            run_open=case((_held_by_a_runner(ts), T.c.run_open), else_=False),
            # ... and it says when the run ended, with its last counters:
            # a caller that sees the finish time reads the final counts
            # (they were the last second's, with copies still going on;
            # found by a CI run of the e2e cancel test).
            last_finish_at=case((_held_by_a_runner(ts), T.c.last_finish_at), else_=_ended_at(ts)),
        )
    )
    if res.rowcount == 1:
        return True
    return (await conn.execute(select(T.c.id).where(mine))).first() is not None


async def set_spec(conn: AsyncConnection, task_id: int, spec: dict[str, Any]) -> None:
    await conn.execute(update(T).where(T.c.id == task_id).values(spec=json.dumps(spec)))


async def load_records(conn: AsyncConnection, task_id: int) -> dict[tuple[int, str], FileRecord]:
    rows = await conn.execute(
        select(F.c.dest, F.c.path, F.c.src_size, F.c.src_mtime, F.c.run_no, F.c.state).where(
            F.c.task_id == task_id
        )
    )
    return {(r.dest, r.path): FileRecord(r.src_size, r.src_mtime, r.run_no, r.state) for r in rows}


async def failures(
    conn: AsyncConnection, task_id: int, run_no: int, limit: int = 100
) -> list[tuple[str, str]]:
    rows = await conn.execute(
        select(F.c.path, F.c.error)
        .where(F.c.task_id == task_id, F.c.run_no == run_no, F.c.state == FileState.FAILED)
        .order_by(F.c.path)
        .limit(limit)
    )
    return [(r.path, r.error or "") for r in rows]


async def save_records(
    conn: AsyncConnection, task_id: int, records: Sequence[tuple[int, str, FileRecord]]
) -> None:
    """Insert or replace the records of (destination, path)."""
    if not records:
        return
    values = [
        {
            "task_id": task_id,
            "dest": dest,
            "path": path,
            "src_size": rec.src_size,
            "src_mtime": rec.src_mtime,
            "run_no": rec.run_no,
            "state": rec.state,
            "error": rec.error,
        }
        for dest, path, rec in records
    ]
    maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = maker(F)
    stmt = stmt.on_conflict_do_update(
        index_elements=[F.c.task_id, F.c.dest, F.c.path],
        set_={
            "src_size": stmt.excluded.src_size,
            "src_mtime": stmt.excluded.src_mtime,
            "run_no": stmt.excluded.run_no,
            "state": stmt.excluded.state,
            "error": stmt.excluded.error,
        },
    )
    await conn.execute(stmt, values)


async def forget_paths(conn: AsyncConnection, task_id: int, paths: Iterable[str]) -> None:
    for path in paths:
        await conn.execute(delete(F).where(F.c.task_id == task_id, F.c.path == path))
