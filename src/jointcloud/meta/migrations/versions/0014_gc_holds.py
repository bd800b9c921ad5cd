"""The GC delay of each running server process (``gc_holds``): processes
sharing one database may be configured with different delays, and GC waits
the longest one a live process counts on

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gc_holds",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("delay_seconds", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gc_holds")
