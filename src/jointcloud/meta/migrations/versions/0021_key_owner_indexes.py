"""The key and credential tables were indexed by the key alone: a user's
plain keys (``jcs user ls`` counts them for every user, the key list reads
them), a project's keys (their list; a bucket's delete cascades to them)
and expired S3 credentials (every GC pass) were found by reading the whole
table, of every user (a scale review: ``jcs user ls`` over 2,000 users of
10 keys took 1.5 s of CPU, growing with the square of the users).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 10:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_project_keys_bucket_id", "project_keys", ["bucket_id"])
    op.create_index("ix_auth_records_expires_at", "auth_records", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_records_expires_at", table_name="auth_records")
    op.drop_index("ix_project_keys_bucket_id", table_name="project_keys")
    op.drop_index("ix_api_keys_user_id", table_name="api_keys")
