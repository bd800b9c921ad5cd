"""A sync task's file record may be ``recent``: copied when its source's
modification time lay too close to the run's start to prove it unchanged
later (core/transfer/engine.py, ``RACY_SLACK``). No table changes; the
revision is new so that an older release, whose code knows only ``done``
and ``failed``, refuses this database in one sentence instead of failing
each task run that meets such a record. The downgrade turns them into
``done`` (what an older release would have recorded).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 04:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    op.execute("UPDATE transfer_files SET state = 'done' WHERE state = 'recent'")
