"""The write-ahead log is copied into the database once per
``CHECKPOINT_BYTES`` of log, not after every commit.

SQLite reuses its log file after a checkpoint instead of shrinking it, so
the file's size says how large the log once grew, not how much it holds
now. A server that had once written ``CHECKPOINT_BYTES`` of log checkpointed
after nearly every group commit from then on: each one two more syncs, in a
thread beside the commits' own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jointcloud.meta import db as db_module
from jointcloud.meta.db import Database

THRESHOLD = 256 << 10
ROW = os.urandom(8 << 10)  # about three pages of log per commit


@pytest.fixture
async def db(
    tmp_path: Path, migrated_sqlite: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    monkeypatch.setattr(db_module, "CHECKPOINT_BYTES", THRESHOLD)
    path = tmp_path / "meta.db"
    shutil.copyfile(migrated_sqlite, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    async with database.write() as conn:
        await conn.exec_driver_sql("CREATE TABLE filler (body BLOB NOT NULL)")
    yield database
    await database.close()


async def test_a_checkpoint_per_threshold_of_log_not_per_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    real = db_module.checkpoint

    def counted(path: str) -> None:
        ran.append(path)
        real(path)

    monkeypatch.setattr(db_module, "checkpoint", counted)
    wal = Path(str(db.engine.url.database) + "-wal")
    commits, largest = 400, 0
    for _ in range(commits):
        async with db.write() as conn:
            await conn.exec_driver_sql("INSERT INTO filler (body) VALUES (?)", (ROW,))
        if db._checkpointing is not None:  # let it end, as a quiet server would
            await db._checkpointing
        largest = max(largest, os.stat(wal).st_size)
    # About 400 x 12 KiB of log: some 20 checkpoints of 256 KiB each.
    log_bytes = commits * len(ROW)
    assert log_bytes // THRESHOLD // 2 <= len(ran) <= 2 * log_bytes // THRESHOLD, len(ran)
    # ... and the log stays bounded all the same.
    assert largest <= 2 * THRESHOLD, largest
