"""Shared fixtures: databases (SQLite and a real PostgreSQL), a context on
local-directory spaces, and an in-process HTTP client for the v1 API."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from support.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.new_database()


@pytest.fixture
async def ctx(tmp_path: Path, database_url: str) -> AsyncIterator[Context]:
    # Tests keep their spaces in tmp_path and talk to S3 on loopback: both
    # allowed here explicitly (a server allows neither by default).
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        local_roots=(tmp_path,),
        endpoint_allow=("127.0.0.1",),
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
