"""The Alembic migrations build exactly the schema the code queries."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.config import Settings
from jointcloud.context import ADMIN, Context
from jointcloud.core.accounts import AccountService
from jointcloud.core.authz import Principal
from jointcloud.core.blockdeletes import BlockDeletes
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import BucketService, PackageService
from jointcloud.core.commands import ObjectAddress, PackageRef
from jointcloud.core.gc import collect_garbage
from jointcloud.core.userspaces import SpacePool, UserSpaceService
from jointcloud.keys.master import MasterKey, private_dir
from jointcloud.meta import catalog, layouts
from jointcloud.meta.db import Database
from jointcloud.meta.migrate import MIGRATIONS, schema_head
from jointcloud.meta.tables import metadata
from jointcloud.redundancy.policy import NonePolicy


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


def test_schema_head_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [schema_head()]


_MIGRATE_AND_SAY = """
import asyncio, sys
from jointcloud.meta.db import Database
async def main():
    db = Database("sqlite+aiosqlite:///" + sys.argv[1])
    try:
        await db.migrate()
    finally:
        await db.close()
asyncio.run(main())
print("alembic" in sys.modules)
"""


def _start_imports_alembic(path: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _MIGRATE_AND_SAY, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip() == "True"


def test_a_start_on_an_up_to_date_schema_leaves_alembic_out(tmp_path: Path) -> None:
    """Alembic is imported by a start that migrates, not by the others (a
    server process keeps what it imported)."""
    path = tmp_path / "m.db"
    assert _start_imports_alembic(path)  # the first start builds the schema
    assert not _start_imports_alembic(path)  # the next ones find it up to date
    engine = create_engine(f"sqlite:///{path}")
    try:
        previous = f"{int(schema_head()) - 1:04d}"
        with engine.begin() as conn:
            _alembic(conn, "downgrade", previous)
        assert _start_imports_alembic(path)  # one revision behind: migrated
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert version == schema_head()
    finally:
        engine.dispose()


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


# -- 0007: multipart uploads become their own entity ---------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_0007_an_upload_in_flight_survives_and_completes(
    tmp_path: Path, database_url: str
) -> None:
    """A JCS three-step upload begun before 0007 (a placeholder object with
    parts in ``upload_parts``) and one with no part yet both become uploads
    linked to their objects: the first completes afterwards with the parts
    staged before the upgrade plus one sent after it, the second takes parts."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, local_roots=(tmp_path,)
    )
    private_dir(settings.data_dir)
    db = Database(settings.db_url)
    parts = {0: b"zero " * 300, 1: b"one " * 500, 2: b"two " * 700}
    try:
        await db.migrate("0006")
        master = MasterKey.load_or_create(settings.data_dir / "master.key")
        pool = SpacePool(db, master, settings.space_rules())
        user, _ = await AccountService(db).ensure_user(ADMIN)
        await UserSpaceService(db, pool, BlockDeletes(db, pool, lambda _: None)).create(
            Principal.user(user.user_id),
            "local",
            {"type": "Local", "path": str(tmp_path / "space")},
        )
        buckets = BucketService(db)
        bucket = await buckets.create(Principal.user(user.user_id), "b")
        pkg = await PackageService(db, buckets).create(
            Principal.user(user.user_id), bucket.bucket_id, "p"
        )
        store = BlockStore(db, master, pool)
        staged = {
            i: await store.stage(user.user_id, _chunks(d), NonePolicy()) for i, d in parts.items()
        }
        async with db.write() as conn:
            big = await catalog.create_placeholder(conn, pkg.package_id, "big.bin", NonePolicy())
            bare = await catalog.create_placeholder(conn, pkg.package_id, "bare.bin", NonePolicy())
            for i, st in staged.items():
                await layouts.activate(conn, st)
                await conn.execute(
                    text(
                        "INSERT INTO upload_parts (object_id, idx, layout_id, size, sha256, md5, "
                        "created_at) VALUES (:o, :i, :l, :s, :sha, :md5, :t)"
                    ),
                    {
                        "o": big,
                        "i": i,
                        "l": st.layout_id,
                        "s": st.size,
                        "sha": st.sha256,
                        "md5": st.md5,
                        "t": datetime.now(UTC),
                    },
                )
        await pool.close()
    finally:
        await db.close()

    ctx = await Context.open(settings)  # migrates to head
    try:
        async with ctx.db.read() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "upload_parts" not in tables
        alice = Principal.user(user.user_id)
        up = await ctx.multipart.linked(alice, big)
        assert up is not None and up.path == "big.bin" and len(up.upload_id) >= 40
        listed = await ctx.multipart.list_parts(
            alice, up.upload_id, ObjectAddress(PackageRef.by_id(pkg.package_id), "big.bin")
        )
        assert [(p.part_number, p.size) for p in listed.parts] == [
            (i, len(d)) for i, d in parts.items()
        ]
        assert await ctx.multipart.linked(alice, bare) is not None
        # The staged parts are referenced: GC with no safety delay keeps them.
        await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
        parts[3] = b"three, sent after the upgrade"
        await ctx.multipart.upload_part_linked(alice, big, 3, _chunks(parts[3]))
        done = await ctx.multipart.complete_linked(alice, big, [2, 0, 3, 1])
        assert done.object_id == big
        content = await ctx.objects.open(Principal.user(user.user_id), big)
        got = b"".join([c async for c in ctx.objects.read(content).body])
        assert got == parts[2] + parts[0] + parts[3] + parts[1]
        await ctx.multipart.upload_part_linked(alice, bare, 0, _chunks(b"bare"))
        bare_done = await ctx.multipart.complete_linked(alice, bare, [0])
        assert bare_done.object_id == bare and bare_done.size == 4
    finally:
        await ctx.close()


async def test_a_database_of_a_newer_release_is_refused_in_a_sentence(tmp_path: Path) -> None:
    """Found by review: a backup from a newer release stopped ``jcs serve``
    with alembic's 400-line traceback ("Can't locate revision")."""
    from jointcloud.errors import MetadataUnavailable
    from jointcloud.meta.migrate import schema_head

    url = f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    db = Database(url)
    try:
        await db.migrate()
        async with db.write() as conn:
            await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await db.close()
    db = Database(url)
    try:
        with pytest.raises(MetadataUnavailable) as refused:
            await db.migrate()
    finally:
        await db.close()
    assert refused.value.message == (
        "the metadata database was made by a newer release of JointCloud (schema revision "
        f"9999; this one knows up to {schema_head()}): run that release, or restore a backup "
        "made by this one"
    )


# -- 0016: Local paths recorded resolved ---------------------------------------


def test_0016_records_local_paths_resolved(tmp_path: Path) -> None:
    """A Local space's path becomes where it resolves (a space whose path
    later resolves elsewhere is refused); other rows are left as they are."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    linked = json.dumps({"type": "Local", "path": str(tmp_path / "link" / "space")})
    plain = json.dumps({"type": "Local", "path": str(real / "plain")})
    remote = json.dumps({"type": "S3", "bucket": "b", "endpoint": "https://s3.example.com"})
    engine = create_engine(f"sqlite:///{tmp_path / 'paths.db'}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0015")
            conn.exec_driver_sql("INSERT INTO users (name, created_at) VALUES ('a', '2026-01-01')")
            for name, storage in (("linked", linked), ("plain", plain), ("remote", remote)):
                conn.execute(
                    text(
                        "INSERT INTO user_spaces (user_id, name, storage, root_path, state, "
                        "created_at) VALUES (1, :name, :storage, 'jcs', 'Normal', '2026-01-01')"
                    ),
                    {"name": name, "storage": storage},
                )
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT name, storage FROM user_spaces")).all())
        assert json.loads(rows["linked"])["path"] == str(real.resolve() / "space")
        assert rows["plain"] == plain and rows["remote"] == remote
    finally:
        engine.dispose()


# -- 0017: debts found by (space, key) -----------------------------------------


def _debt_plan(conn: Connection) -> str:
    """SQLite's plan for forgiving one debt (``strays.forgive``)."""
    rows = conn.exec_driver_sql(
        "EXPLAIN QUERY PLAN DELETE FROM stray_blocks WHERE user_space_id = 1 AND key = 'k'"
    ).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_0017_a_debt_is_forgiven_through_an_index_on_its_key(tmp_path: Path) -> None:
    """Every drained block owes a delete and forgives it: before 0017 each
    forgiving searched all of its space's debts; the downgrade puts the
    space-only index back."""
    engine = create_engine(f"sqlite:///{tmp_path / 'debts.db'}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        with engine.connect() as conn:
            plan = _debt_plan(conn)
        assert "ix_stray_blocks_space_key (user_space_id=? AND key=?)" in plan, plan
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0016")
        with engine.connect() as conn:
            plan = _debt_plan(conn)
            indexes = {i["name"] for i in inspect(conn).get_indexes("stray_blocks")}
        assert indexes == {"ix_stray_blocks_user_space_id"}
        assert "(user_space_id=?)" in plan, plan
    finally:
        engine.dispose()


# -- 0018: auth_records of the first 0008 ---------------------------------------


def test_0018_remakes_the_auth_records_of_the_first_0008(tmp_path: Path) -> None:
    """0008 was changed after its first commit (f3209c2: one ``sealed``
    column; 3b065ef: the two encrypted columns). A database migrated by a
    release in between stayed at 0008 with the first shape, so every S3
    credential the auth service made after an upgrade failed on the missing
    columns; the upgrade now makes the table as 0008 does."""
    engine = create_engine(f"sqlite:///{tmp_path / 'first0008.db'}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0008")
            # auth_records as f3209c2's 0008 made it
            conn.exec_driver_sql("DROP INDEX ix_auth_records_project_key_id")
            conn.exec_driver_sql("DROP TABLE auth_records")
            conn.exec_driver_sql(
                "CREATE TABLE auth_records (key_hash BLOB NOT NULL, "
                "project_key_id INTEGER NOT NULL, sealed BLOB NOT NULL, "
                "public BOOLEAN NOT NULL, expires_at DATETIME, created_at DATETIME NOT NULL, "
                "PRIMARY KEY (key_hash), "
                "FOREIGN KEY(project_key_id) REFERENCES project_keys (id) ON DELETE CASCADE)"
            )
            conn.exec_driver_sql(
                "CREATE INDEX ix_auth_records_project_key_id ON auth_records (project_key_id)"
            )
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        with engine.connect() as conn:
            assert _diff(conn) == []
            columns = [c["name"] for c in inspect(conn).get_columns("auth_records")]
        assert "sealed" not in columns
        assert {"encrypted_secret_key", "encrypted_access_grant"} <= set(columns)
    finally:
        engine.dispose()


async def test_0018_leaves_the_auth_records_of_the_final_0008(tmp_path: Path) -> None:
    """A database made by any other release keeps its credentials."""
    url = tmp_path / "final0008.db"
    engine = create_engine(f"sqlite:///{url}")
    row = {
        "key_hash": b"h" * 32,
        "project_key_id": 1,
        "encrypted_secret_key": b"s",
        "encrypted_access_grant": b"g",
        "public": False,
        "created_at": T0,
    }
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "0017")
            conn.exec_driver_sql("INSERT INTO users (name, created_at) VALUES ('a', :t)", {"t": T0})
            conn.exec_driver_sql(
                "INSERT INTO buckets (user_id, name, project_id, created_at, policy_changed_at) "
                "VALUES (1, 'b', 'p', :t, :t)",
                {"t": T0},
            )
            conn.exec_driver_sql(
                "INSERT INTO project_keys (user_id, bucket_id, name, head, secret, created_at) "
                "VALUES (1, 1, 'k', x'01', x'02', :t)",
                {"t": T0},
            )
            conn.execute(
                text(
                    "INSERT INTO auth_records (key_hash, project_key_id, encrypted_secret_key, "
                    "encrypted_access_grant, public, created_at) VALUES (:key_hash, "
                    ":project_key_id, :encrypted_secret_key, :encrypted_access_grant, :public, "
                    ":created_at)"
                ),
                row,
            )
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT key_hash, encrypted_secret_key FROM auth_records"))
            assert kept.all() == [(b"h" * 32, b"s")]
    finally:
        engine.dispose()


def test_0019_downgrade_records_recent_copies_as_done(tmp_path: Path) -> None:
    """An older release knows only ``done`` and ``failed``: the downgrade
    leaves it nothing else to read (SQLite does not enforce the task's
    foreign key here, so the file rows stand alone)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'files.db'}")
    try:
        with engine.begin() as conn:
            _alembic(conn, "upgrade", "head")
            for path, state in (("a", "recent"), ("b", "done"), ("c", "failed")):
                conn.execute(
                    text(
                        "INSERT INTO transfer_files (task_id, dest, path, src_size, src_mtime, "
                        "run_no, state) VALUES (1, 0, :path, 1, 0, 1, :state)"
                    ),
                    {"path": path, "state": state},
                )
        with engine.begin() as conn:
            _alembic(conn, "downgrade", "0018")
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT path, state FROM transfer_files")).all())
        assert rows == {"a": "done", "b": "done", "c": "failed"}
    finally:
        engine.dispose()
