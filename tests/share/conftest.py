"""Fixtures of link sharing's tests: a project with a package (``docs``), a
project key and its grant, helpers that put objects and make public
accesses or whole grants restricted by a caveat, and an httpx client over
the share app (``share.create_app``) of the test's context."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from share_support import PASSPHRASE, World

from jointcloud.api.share.app import create_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.grant import new_grant


@pytest.fixture
async def world(ctx: Context) -> AsyncIterator[World]:
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    project = await ctx.buckets.create(owner, "shareproj")
    pkg = await ctx.packages.create(owner, project.bucket_id, "docs")
    _, key = await ctx.project_keys.create(owner, project.bucket_id, "share")
    grant = new_grant(ctx.settings.satellite_url(), key, PASSPHRASE, project.project_id)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://share.test", timeout=30
    ) as client:
        yield World(ctx, owner, project, pkg.name, key, grant, client)
