"""A key of one project lists its one bucket without reading its owner's
every bucket.

The bucket list of a project key (``GET /v1/bucket/listAll``) read all
buckets of the key's owner and kept its own: 2,000 buckets cost 14 ms of
the server's CPU for an answer of one (found by the scale review of
2026-12-07, twelfth session). Buckets built from rows are counted.
"""

from __future__ import annotations

import pytest
from core_support import World

from jointcloud.core.authz import Principal
from jointcloud.meta import catalog
from jointcloud.meta.catalog import buckets as catalog_buckets
from support.counting import rows_built


async def test_a_project_key_lists_its_bucket_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = world.alice
    async with world.ctx.db.write() as conn:
        for i in range(50):
            await catalog.create_bucket(conn, alice.user_id, f"more{i:02d}", None)
    built = rows_built(monkeypatch, catalog_buckets, "to_bucket", lambda row: row.name)
    scoped = Principal(alice.user_id, project_id=world.project.bucket_id)
    listed = await world.ctx.buckets.list(scoped)
    assert [b.bucket_id for b in listed] == [world.project.bucket_id]
    assert len(built) == 1, len(built)  # was 51: every bucket of alice's

    other = Principal(alice.user_id, project_id=world.bob_project.bucket_id)
    assert await world.ctx.buckets.list(other) == []  # not alice's: none

    built.clear()
    assert len(await world.ctx.buckets.list(alice)) == 51
