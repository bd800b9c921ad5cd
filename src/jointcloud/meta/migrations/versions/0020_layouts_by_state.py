"""GC's garbage query asks for live layouts released before its delay (an
index on ``released_at`` serves that) or pending ones created before it,
the layouts of crashed uploads, which no index served: every GC pass, once
a minute by default, read the whole ``layouts`` table, inline blocks
included (a scale review found it: 800 MB at 200,000 small objects).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 10:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: the live layouts' term must keep to its index on released_at
    # (an index leading with the state drew SQLite's planner to it).
    pending = sa.text("state = 'pending'")
    op.create_index(
        "ix_layouts_pending_created_at",
        "layouts",
        ["created_at"],
        sqlite_where=pending,
        postgresql_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ix_layouts_pending_created_at", table_name="layouts")
