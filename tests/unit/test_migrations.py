"""The Alembic migrations build exactly the schema the code queries."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta.db import MIGRATIONS, Database
from jointcloud.meta.tables import metadata


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_migrations_match_table_definitions(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await db.migrate()
        await db.migrate()  # idempotent: a second start changes nothing
        async with db.read() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.close()


# -- 0005: AUTOINCREMENT on an existing SQLite database ------------------------

ID_TABLES = (
    "users",
    "api_keys",
    "user_spaces",
    "buckets",
    "packages",
    "objects",
    "layouts",
    "blocks",
    "transfer_tasks",
)
T0 = "2026-01-01 00:00:00.000000"


def _row(table: str, ref: int) -> dict[str, object]:
    """A row of ``table`` as of migration 0004 (no id), referring to the rows
    with id ``ref`` of its parent tables."""
    return {
        "users": {"name": f"u{ref}-{secrets.token_hex(3)}", "created_at": T0},
        "api_keys": {"user_id": ref, "key_hash": secrets.token_hex(32), "created_at": T0},
        "user_spaces": {
            "user_id": ref,
            "name": f"s-{secrets.token_hex(3)}",
            "storage": '{"type": "Local", "path": "/x"}',
            "credential": b"\x00sealed",
            "root_path": "",
            "state": "Normal",
            "latency_ms": 1.5,
            "created_at": T0,
        },
        "buckets": {
            "user_id": ref,
            "name": f"b-{secrets.token_hex(3)}",
            "project_id": secrets.token_hex(8),
            "redundancy": None,
            "created_at": T0,
            "policy_changed_at": T0,
        },
        "packages": {
            "bucket_id": ref,
            "name": f"p-{secrets.token_hex(3)}",
            "redundancy": '{"type": "rep", "n": 2}',
            "created_at": T0,
            "policy_changed_at": None,
        },
        "objects": {
            "package_id": ref,
            "path": f"dir/é-{secrets.token_hex(3)}",
            "size": 2**40,
            "file_hash": "Full" + "A" * 64,
            "etag": "e" * 32,
            "redundancy": '{"type": "none"}',
            "committed": True,
            "created_at": T0,
            "updated_at": T0,
        },
        "layouts": {
            "state": "live",
            "policy": "{}",
            "size": 10,
            "segment_size": 4,
            "chunk_len": 4,
            "wrapped_key": secrets.token_bytes(60),
            "created_at": T0,
            "released_at": None,
        },
        "blocks": {"layout_id": ref, "idx": 0, "user_space_id": ref, "key": f"k/{ref}"},
        "transfer_tasks": {
            "user_id": ref,
            "kind": "sync",
            "spec": '{"packageID": 3}',
            "state": "waiting",
            "run_no": 1,
            "run_open": False,
            "files_total": 0,
            "files_done": 0,
            "files_failed": 0,
            "files_skipped": 0,
            "bytes_total": 0,
            "bytes_done": 0,
            "created_at": T0,
        },
    }[table]


async def _insert(conn: AsyncConnection, table: str, values: dict[str, object]) -> int:
    cols = ", ".join(f'"{c}"' for c in values)
    params = ", ".join(f":{c}" for c in values)
    sql = f'INSERT INTO "{table}" ({cols}) VALUES ({params}) RETURNING id'
    return int((await conn.execute(text(sql), values)).scalar_one())


async def _dump(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.read() as conn:
        names = [
            n
            for (n,) in await conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
            )
        ]
        out = {}
        for n in names:
            if n == "sqlite_sequence":  # compared on its own
                continue
            rows = await conn.execute(text(f'SELECT * FROM "{n}"'))
            out[n] = sorted((tuple(r) for r in rows), key=repr)
        return out


async def _build_0004(db: Database) -> None:
    """A database at 0004 with three rows in each id table (row i refers to
    the parents' row i) and child rows hanging on the newest ones."""
    await db.migrate("0004")
    async with db.write() as conn:
        for i in (1, 2, 3):
            for table in ID_TABLES:
                assert await _insert(conn, table, _row(table, i)) == i
        children = {
            "object_parts": {"object_id": 3, "seq": 0, "layout_id": 3, "offset": 0},
            "upload_parts": {
                "object_id": 3,
                "idx": 0,
                "layout_id": 3,
                "size": 1,
                "sha256": "0" * 64,
                "md5": "0" * 32,
                "created_at": T0,
            },
            "repair_queue": {
                "layout_id": 3,
                "reason": "missing",
                "enqueued_at": T0,
                "attempts": 0,
                "not_before": T0,
                "last_error": None,
            },
            "transfer_files": {
                "task_id": 3,
                "dest": 0,
                "path": "a/b",
                "src_size": 1,
                "src_mtime": 1.25,
                "run_no": 1,
                "state": "done",
                "error": None,
            },
        }
        for table, values in children.items():
            cols = ", ".join(f'"{c}"' for c in values)
            params = ", ".join(f":{c}" for c in values)
            await conn.execute(text(f'INSERT INTO "{table}" ({cols}) VALUES ({params})'), values)


async def test_0005_keeps_the_data_and_stops_reusing_ids(tmp_path: Path) -> None:
    """A database made before 0005 is rebuilt with AUTOINCREMENT: every row
    of every table survives (none taken by a cascade while a parent table is
    rebuilt), the sequences start at the highest id, and from then on a
    deleted newest id is never handed out again."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await _build_0004(db)
        before = await _dump(db)
        assert all(before[name] for name in ("object_parts", "repair_queue", "transfer_files"))

        await db.migrate("0005")
        after = await _dump(db)
        assert after.pop("alembic_version") == [("0005",)]
        before.pop("alembic_version")
        assert after == before
        async with db.read() as conn:
            seq = dict((await conn.execute(text("SELECT name, seq FROM sqlite_sequence"))).all())
            assert seq == dict.fromkeys(ID_TABLES, 3)
            assert await conn.scalar(text("PRAGMA integrity_check")) == "ok"
            assert (await conn.execute(text("PRAGMA foreign_key_check"))).all() == []
            # Migrating switched foreign keys off on its connection: back on.
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
        await db.migrate()  # the later migrations on top of the rebuilt tables
        async with db.read() as conn:
            # The rebuilt tables have no diff from the table definitions.
            assert await conn.run_sync(_diff) == []

        async with db.write() as conn:
            for table in ID_TABLES:
                newest = await _insert(conn, table, _row(table, 1))
                assert newest == 4
                await conn.execute(text(f'DELETE FROM "{table}" WHERE id = :i'), {"i": newest})
            for table in ID_TABLES:
                assert await _insert(conn, table, _row(table, 1)) == 5, table
        # Foreign keys still cascade (api_keys follow their user).
        async with db.write() as conn:
            await conn.execute(text("DELETE FROM users WHERE id = 5"))
            assert await conn.scalar(text("SELECT COUNT(*) FROM api_keys WHERE user_id = 5")) == 0
    finally:
        await db.close()


def test_0005_refuses_to_run_with_foreign_keys_on(tmp_path: Path) -> None:
    """Rebuilding ``users`` with foreign keys on would delete every row that
    refers to a user (ON DELETE CASCADE); the migration stops instead."""
    url = tmp_path / "fk.db"
    engine = create_engine(f"sqlite:///{url}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0004")
            conn.exec_driver_sql("INSERT INTO users (name, created_at) VALUES ('a', '2026-01-01')")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # pysqlite: no BEGIN before it
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(RuntimeError, match="foreign keys off"):
                _alembic(conn, "upgrade", "head")
            conn.rollback()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM users").scalar() == 1
    finally:
        engine.dispose()


def test_0005_downgrade_keeps_the_data(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'down.db'}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
            conn.exec_driver_sql("INSERT INTO users (name, created_at) VALUES ('a', '2026-01-01')")
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0004")
        with engine.connect() as conn:
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'users'")
            assert "AUTOINCREMENT" not in sql.scalar_one()
            assert conn.exec_driver_sql("SELECT name FROM users").scalars().all() == ["a"]
    finally:
        engine.dispose()


def _alembic(conn: Connection, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, revision)
