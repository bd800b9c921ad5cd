"""object metadata for S3 and the gateway: content headers, user metadata,
tags and additional checksums on objects; tags on packages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OBJECT_COLUMNS = (
    ("content_type", sa.String(255)),
    ("content_encoding", sa.String(255)),
    ("cache_control", sa.String(255)),
    ("content_disposition", sa.String(1024)),
    ("expires", sa.String(64)),  # as the client sent it (an HTTP date)
    ("user_metadata", sa.Text()),  # JSON object, name -> value
    ("tags", sa.Text()),  # JSON object, key -> value
    ("checksums", sa.Text()),  # JSON object, algorithm -> base64 value
)


def upgrade() -> None:
    # Plain ADD COLUMN of nullable columns: no table rebuild on SQLite, so
    # the AUTOINCREMENT of 0005 and every foreign key stay as they are.
    for name, typ in OBJECT_COLUMNS:
        op.add_column("objects", sa.Column(name, typ, nullable=True))
    op.add_column("packages", sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.drop_column("tags")
    with op.batch_alter_table("objects") as batch:
        for name, _ in reversed(OBJECT_COLUMNS):
            batch.drop_column(name)
