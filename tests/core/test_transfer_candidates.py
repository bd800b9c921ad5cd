"""A runner looking for work reads open runs and a page of due tasks, not
every task kept.

Every second (``has_due``), and at each end of a run while it runs tasks
(``claim_due``), a runner asked for open runs or due tasks in one query
whose open-run branch no index served: it read every task kept (finished
ones stay a week) and built every due one, however few it could start (a
scale review of 2026-12-07, twelfth session: 10,000 due tasks cost 0.3 s
of CPU a look; migration 0022). Rows built and SQLite's plans are counted,
not time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from jointcloud.core.transfer.runner import TaskRunner
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database
from support.counting import rows_built

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
INSERT = text(
    "INSERT INTO transfer_tasks (user_id, kind, spec, state, run_no, run_open, files_total,"
    " files_done, files_failed, files_skipped, bytes_total, bytes_done, created_at,"
    " next_run_at, lease_owner, lease_until) VALUES (1, 'sync', '{}', :state, 1, :open,"
    " 0, 0, 0, 0, 0, 0, :at, :next, :owner, :until)"
)


async def _task(
    db: Database,
    state: str,
    next_run: datetime | None = None,
    run_open: bool = False,
    owner: str | None = None,
    until: datetime | None = None,
) -> int:
    async with db.write() as conn:
        res = await conn.execute(
            INSERT,
            {
                "state": state,
                "open": run_open,
                "at": LONG_AGO,
                "next": next_run,
                "owner": owner,
                "until": until,
            },
        )
        return int(res.lastrowid)


async def test_a_runner_reads_open_runs_and_a_page_of_due_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/meta.db")
    await db.migrate()
    try:
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO users (name, created_at, disabled) VALUES ('ann', :at, 0)"),
                {"at": LONG_AGO},
            )
        for _ in range(300):  # finished one-shot tasks, kept a week
            await _task(db, "succeeded")
        held = "elsewhere:1:runner"  # another host's live runner
        await _task(db, "running", None, True, held, FUTURE)  # running there
        orphan = await _task(db, "running", None, True, held, LONG_AGO)
        # 150 due tasks, 100 of them at one time (ties are paged by id), the
        # first 100 held by the other runner: a page holds none to start.
        due = [
            await _task(
                db,
                "succeeded",
                LONG_AGO + timedelta(seconds=i // 100),
                *((True, held, FUTURE) if i < 100 else ()),
            )
            for i in range(150)
        ]
        runner = TaskRunner(db, None, None)  # type: ignore[arg-type]

        built = rows_built(monkeypatch, repo, "_task")
        statements: list[str] = []

        def note(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if sql.lstrip().upper().startswith("SELECT") and "transfer_tasks" in sql:
                statements.append(sql)

        event.listen(db.engine.sync_engine, "before_cursor_execute", note)
        assert await runner.has_due()  # the orphan, first
        assert len(built) <= 2, len(built)  # was 152: every open run and due task
        built.clear()
        claimed = await runner.claim_due(2)
        assert [t.task_id for t in claimed] == [orphan, due[100]]
        assert len(built) <= 2 + 2 * 64 + 2, len(built)  # two pages, two claims
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)

        plans: list[str] = []
        async with db.read() as conn:
            for sql in set(statements):
                raw = await conn.get_raw_connection()
                params = tuple(None for _ in range(sql.count("?")))
                cursor = await raw.driver_connection.execute(  # type: ignore[union-attr]
                    "EXPLAIN QUERY PLAN " + sql, params
                )
                plans += [row[-1] for row in await cursor.fetchall()]
        assert plans
        assert not any(step.startswith("SCAN transfer_tasks") for step in plans), plans
    finally:
        await db.close()
