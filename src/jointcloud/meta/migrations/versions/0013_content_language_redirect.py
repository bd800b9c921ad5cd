"""Objects and multipart uploads keep two more content fields S3 stores
with an object: ``Content-Language`` and ``x-amz-website-redirect-location``

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = (
    ("content_language", sa.String(255)),
    ("website_redirect_location", sa.String(2048)),
)


def upgrade() -> None:
    # Plain ADD COLUMN of nullable columns: no table rebuild on SQLite.
    # Objects written before it have neither (NULL), as before.
    for table in ("objects", "uploads"):
        for name, typ in COLUMNS:
            op.add_column(table, sa.Column(name, typ, nullable=True))


def downgrade() -> None:
    for table in ("uploads", "objects"):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(COLUMNS):
                batch.drop_column(name)
