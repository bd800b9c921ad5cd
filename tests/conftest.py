"""Shared fixtures: databases (SQLite and a real PostgreSQL), a context on
local-directory spaces, and an in-process HTTP client for the v1 API."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.meta.db import Database
from support.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def _migrate(url: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head, made once: a test's database is a
    copy of it (running every migration per test is the bulk of the setup)."""
    path = tmp_path_factory.mktemp("migrated") / "meta.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    # Closing the last connection checkpointed the WAL into the main file:
    # the file alone is the whole database.
    assert not path.with_name("meta.db-wal").exists()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of its own for the test: empty, or, when the test
    uses ``ctx`` (whose ``Context.open`` migrates it to head before the
    test sees it anyway), a copy of one already migrated to head. Context.open
    still runs the migrations on it: at head they change nothing."""
    migrated = "ctx" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "meta.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    pg: PostgresServer = request.getfixturevalue("postgres")
    template = pg.template("head", _migrate) if migrated else None
    url = pg.new_database(template)
    yield url
    pg.drop_database(url)


@pytest.fixture
def inline_max_bytes() -> int:
    """Objects kept inline in the metadata database up to this size. Off
    here: these tests exercise blocks in spaces (placement, repair, drain,
    scrub...) with small payloads. ``tests/core`` and the inline tests
    override it with the server's default."""
    return 0


@pytest.fixture
async def ctx(tmp_path: Path, database_url: str, inline_max_bytes: int) -> AsyncIterator[Context]:
    # Tests keep their spaces in tmp_path and talk to S3 on loopback: both
    # allowed here explicitly (a server allows neither by default).
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        local_roots=(tmp_path,),
        endpoint_allow=("127.0.0.1",),
        inline_max_bytes=inline_max_bytes,
    )
    context = await Context.open(settings)
    await context.bootstrap()
    yield context
    await context.close()


@pytest.fixture
def root_key(ctx: Context) -> str:
    return (ctx.settings.data_dir / "root.key").read_text().strip()


@pytest.fixture
async def client(ctx: Context, root_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx, background=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {root_key}"},
        timeout=60,
    ) as c:
        yield c
