"""A Local space's path is recorded resolved (every symbolic link followed),
and a space whose path no longer resolves to itself is refused: a user who
could replace part of an older space's directory by a link reached the
files of a newer space of another user (found by review). Rows recorded
before keep the path as it was given; this writes where each one resolves
now, which is where its files have been read and written.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 18:50:00
"""

from __future__ import annotations

import json
import os

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, storage FROM user_spaces")).fetchall()
    for space_id, text in rows:
        try:
            storage = json.loads(text)
        except ValueError:
            continue  # refused when it is opened, as before
        if not isinstance(storage, dict) or storage.get("type") != "Local":
            continue
        path = storage.get("path")
        if not isinstance(path, str) or "\x00" in path:
            continue
        resolved = os.path.realpath(path)
        if resolved != path:
            storage["path"] = resolved
            conn.execute(
                sa.text("UPDATE user_spaces SET storage = :storage WHERE id = :id"),
                {"storage": json.dumps(storage), "id": space_id},
            )


def downgrade() -> None:
    pass  # a resolved path is a path the older code reads as well
