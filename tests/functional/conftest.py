"""Fixtures of the functional tests: ``api`` wraps the admin ``client``;
``bob`` is a second user with his own client and one Local space; ``anon``
sends no API key; ``migrated_db`` is a bare ``Database`` at head (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jcs_helpers import Api, Other

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.meta.db import Database


@pytest.fixture
async def api(client: httpx.AsyncClient, ctx: Context, tmp_path: Path) -> Api:
    a = Api(client, ctx, tmp_path)
    admin = await ctx.accounts.authenticate(client.headers["Authorization"].split()[1])
    for s in await ctx.spaces.list(Principal.user(admin.user_id)):
        a.spaces[s.user_space_id] = Path(s.storage["path"])
    return a


@pytest.fixture
async def bob(ctx: Context, tmp_path: Path) -> AsyncIterator[Other]:
    user, key = await ctx.accounts.ensure_user("bob")
    assert key is not None
    app = create_app(ctx, background=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as c:
        b = Api(c, ctx, tmp_path / "bob")
        await b.add_spaces(1)
        yield Other(user.user_id, b)


@pytest.fixture
async def anon(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no API key at all."""
    app = create_app(ctx, background=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://jcs.test", timeout=60
    ) as c:
        yield c


@pytest.fixture
async def migrated_db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.close()
