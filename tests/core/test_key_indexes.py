"""A user's keys, a project's keys and expired credentials are found by
index, not by reading every key of every user.

The key tables were indexed by the key alone: ``jcs user ls`` counted
each user's plain keys by reading the whole ``api_keys`` table once per
user (2,000 users of 10 keys: 1.5 s of CPU, growing with the square of
the users), a key list read every user's keys, a project's key list (and
a bucket's delete, by its cascade) every project's, and each GC pass
every S3 credential (found by the scale review of 2026-12-07, twelfth
session; migration 0021). SQLite's plans of the statements these
functions run are what is checked: they do not depend on the tables' size.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jointcloud.meta import accounts, keys
from jointcloud.meta import catalog as buckets
from support.sqlplans import fresh_sqlite, plans, recorded

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


async def test_key_tables_are_read_by_index(tmp_path: Path) -> None:
    async with fresh_sqlite(tmp_path) as db:
        async with db.write() as conn:
            ann = await accounts.create_user(conn, "ann")
            bob = await accounts.create_user(conn, "bob")
            for i in range(3):
                await accounts.add_api_key(conn, ann.user_id, f"ann{i}")
            await accounts.add_api_key(conn, bob.user_id, "bob0")
            bucket = await buckets.create_bucket(conn, ann.user_id, "photos", None)
            other = await buckets.create_bucket(conn, bob.user_id, "docs", None)
            key = await keys.add_project_key(conn, ann.user_id, bucket.bucket_id, "k", b"h1", b"s")
            await keys.add_project_key(conn, bob.user_id, other.bucket_id, "k", b"h2", b"s")
            await keys.add_auth_record(conn, b"c1", key.key_id, b"s", b"g", False, WHEN)

        with recorded(db) as statements:
            async with db.write() as conn:
                users = await accounts.list_users(conn)
                ann_keys = await accounts.list_api_keys(conn, ann.user_id)
                project = await keys.list_project_keys(conn, bucket.bucket_id)
                expired = await keys.delete_expired_auth_records(
                    conn, datetime(2027, 1, 1, tzinfo=UTC)
                )
        assert [(u.name, u.key_count) for u in users] == [("ann", 3), ("bob", 1)]
        assert len(ann_keys) == 3
        assert [k.key_id for k in project] == [key.key_id]
        assert expired == 1

        steps = await plans(db, statements)
        assert steps, statements
        for table in ("api_keys", "project_keys", "auth_records"):
            assert not any(step.startswith(f"SCAN {table}") for step in steps), steps
