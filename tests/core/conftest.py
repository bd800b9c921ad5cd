"""The core service suite: the domain services called directly with typed
commands and principals, on SQLite and PostgreSQL (``ctx`` from
tests/conftest.py). The coming protocol adapters (S3, gateway) are thin
translators over these same calls, so what is asserted here holds for every
protocol."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from core_support import World

from jointcloud.config import Settings
from jointcloud.context import ADMIN, Context
from jointcloud.core.authz import Principal


@pytest.fixture
def inline_max_bytes() -> int:
    """The server's default: small objects inline, as a user gets them."""
    return Settings(data_dir=Path("unused")).inline_max_bytes


@pytest.fixture
async def world(ctx: Context) -> World:
    admin, _ = await ctx.accounts.ensure_user(ADMIN)
    other, _ = await ctx.accounts.ensure_user("bob")
    project = await ctx.buckets.create(Principal.user(admin.user_id), "proj")
    bob_project = await ctx.buckets.create(Principal.user(other.user_id), "bobs")
    return World(
        ctx, Principal.user(admin.user_id), project, Principal.user(other.user_id), bob_project
    )
