"""Fixtures of link sharing's tests: a project with a package (``docs``), a
project key and its grant, helpers that put objects and make public
accesses or whole grants restricted by a caveat, and an httpx client over
the share app (``share.create_app``) of the test's context."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from share_support import World

from jointcloud.api.share.app import create_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.caveats import APIKey
from jointcloud.keys.grant import CipherSuite, Grant

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests here run on SQLite; those marked ``pg`` on PostgreSQL as well
    (the rest do not reach the database in a way that differs). Others are
    not generated for PostgreSQL (deselected, not skipped)."""
    dropped = [
        item
        for item in items
        if HERE in item.path.parents
        and "[postgresql" in item.nodeid
        and item.get_closest_marker("pg") is None
    ]
    if dropped:
        gone = set(map(id, dropped))
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if id(item) not in gone]


@pytest.fixture
async def world(ctx: Context) -> AsyncIterator[World]:
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    project = await ctx.buckets.create(owner, "shareproj")
    pkg = await ctx.packages.create(owner, project.bucket_id, "docs")
    _, key = await ctx.project_keys.create(owner, project.bucket_id, "share")
    # The grant's root key is what a passphrase derives (Argon2id, 64 MiB:
    # ~0.3 s a test); any 32 bytes do for these tests (the first grant
    # registered fixes the project's verifier). test_share_access derives one.
    grant = Grant(
        satellite_address=ctx.settings.satellite_url(),
        api_key=APIKey.parse(key),
        root_key=secrets.token_bytes(32),
        path_cipher=CipherSuite.NULL,
    )
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://share.test", timeout=30
    ) as client:
        yield World(ctx, owner, project, pkg.name, key, grant, client)
