"""multipart uploads as their own entity: uploads and multipart_parts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00

Until 0006 a multipart upload was an object row (an invisible placeholder, or
the existing object it overwrites) and its parts were ``upload_parts`` rows
keyed by that object's id: one upload per path. From 0007 an upload is a row
of its own with an opaque random id (several may target one path, as S3
allows), and its parts are ``multipart_parts`` rows numbered as the client
numbered them. A JCS v1 upload is an upload linked to its object
(``object_id``).

The upgrade turns every upload in flight into such a row: each uncommitted
(placeholder) object, and each committed object with staged parts, gets an
upload linked to it, with the object's path and policy; its parts move over
with their layouts, sizes and hashes, so the upload completes afterwards as
if nothing happened. ``upload_parts`` goes.

The downgrade moves the parts of JCS uploads back to ``upload_parts`` and
releases those of other uploads (GC removes them), which the old schema
cannot hold.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PathType = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")

_objects = sa.table(
    "objects",
    sa.column("id", Id),
    sa.column("package_id", Id),
    sa.column("path", PathType),
    sa.column("redundancy", sa.Text()),
    sa.column("committed", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_upload_parts = sa.table(
    "upload_parts",
    sa.column("object_id", Id),
    sa.column("idx", sa.Integer()),
    sa.column("layout_id", Id),
    sa.column("size", sa.BigInteger()),
    sa.column("sha256", sa.String(64)),
    sa.column("md5", sa.String(32)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_uploads = sa.table(
    "uploads",
    sa.column("id", Id),
    sa.column("upload_id", sa.String(128)),
    sa.column("package_id", Id),
    sa.column("path", PathType),
    sa.column("redundancy", sa.Text()),
    sa.column("object_id", Id),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_parts = sa.table(
    "multipart_parts",
    sa.column("upload_row_id", Id),
    sa.column("part_number", sa.Integer()),
    sa.column("layout_id", Id),
    sa.column("size", sa.BigInteger()),
    sa.column("md5", sa.String(32)),
    sa.column("sha256", sa.String(64)),
    sa.column("checksums", sa.Text()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_layouts = sa.table(
    "layouts",
    sa.column("id", Id),
    sa.column("state", sa.String(16)),
    sa.column("released_at", sa.DateTime(timezone=True)),
)
_object_parts = sa.table("object_parts", sa.column("layout_id", Id))


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _create_upload_parts() -> None:
    """``upload_parts`` as 0001 made it."""
    op.create_table(
        "upload_parts",
        sa.Column("object_id", Id, nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("layout_id", Id, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["layout_id"], ["layouts.id"]),
        sa.ForeignKeyConstraint(["object_id"], ["objects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("object_id", "idx"),
    )
    op.create_index("ix_upload_parts_layout_id", "upload_parts", ["layout_id"], unique=False)


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("upload_id", sa.String(128), nullable=False, unique=True),
        sa.Column("package_id", Id, nullable=False),
        sa.Column("path", PathType, nullable=False),
        sa.Column("redundancy", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("content_encoding", sa.String(255), nullable=True),
        sa.Column("cache_control", sa.String(255), nullable=True),
        sa.Column("content_disposition", sa.String(1024), nullable=True),
        sa.Column("expires", sa.String(64), nullable=True),
        sa.Column("user_metadata", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("checksum_algorithm", sa.String(16), nullable=True),
        sa.Column("object_id", Id, sa.ForeignKey("objects.id"), nullable=True, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_uploads_package_path", "uploads", ["package_id", "path"])
    op.create_index("ix_uploads_updated_at", "uploads", ["updated_at"])
    op.create_table(
        "multipart_parts",
        sa.Column("upload_row_id", Id, sa.ForeignKey("uploads.id"), primary_key=True),
        sa.Column("part_number", sa.Integer(), primary_key=True),
        sa.Column("layout_id", Id, sa.ForeignKey("layouts.id"), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_multipart_parts_layout_id", "multipart_parts", ["layout_id"])

    bind = op.get_bind()
    last_part = (
        sa.select(sa.func.max(_upload_parts.c.created_at))
        .where(_upload_parts.c.object_id == _objects.c.id)
        .scalar_subquery()
    )
    in_flight = sa.select(
        _objects.c.id,
        _objects.c.package_id,
        _objects.c.path,
        _objects.c.redundancy,
        _objects.c.updated_at,
        last_part.label("last_part"),
    ).where(
        sa.or_(
            _objects.c.committed.is_(sa.false()),
            sa.exists().where(_upload_parts.c.object_id == _objects.c.id),
        )
    )
    rows = bind.execute(in_flight.order_by(_objects.c.id)).all()
    if rows:
        values = []
        for r in rows:
            touched = _aware(r.updated_at)
            if r.last_part is not None:
                touched = max(touched, _aware(r.last_part))
            values.append(
                {
                    "upload_id": secrets.token_urlsafe(32),
                    "package_id": r.package_id,
                    "path": r.path,
                    "redundancy": r.redundancy,
                    "object_id": r.id,
                    # The expiry counts from the last part, as it did.
                    "created_at": touched,
                    "updated_at": touched,
                }
            )
        bind.execute(sa.insert(_uploads), values)
        bind.execute(
            sa.insert(_parts).from_select(
                [
                    "upload_row_id",
                    "part_number",
                    "layout_id",
                    "size",
                    "md5",
                    "sha256",
                    "checksums",
                    "created_at",
                ],
                sa.select(
                    _uploads.c.id,
                    _upload_parts.c.idx,
                    _upload_parts.c.layout_id,
                    _upload_parts.c.size,
                    _upload_parts.c.md5,
                    _upload_parts.c.sha256,
                    sa.null(),
                    _upload_parts.c.created_at,
                ).join(_uploads, _uploads.c.object_id == _upload_parts.c.object_id),
            )
        )
    op.drop_index("ix_upload_parts_layout_id", table_name="upload_parts")
    op.drop_table("upload_parts")


def downgrade() -> None:
    _create_upload_parts()
    bind = op.get_bind()
    bind.execute(
        sa.insert(_upload_parts).from_select(
            ["object_id", "idx", "layout_id", "size", "sha256", "md5", "created_at"],
            sa.select(
                _uploads.c.object_id,
                _parts.c.part_number,
                _parts.c.layout_id,
                _parts.c.size,
                _parts.c.sha256,
                _parts.c.md5,
                _parts.c.created_at,
            )
            .join(_uploads, _uploads.c.id == _parts.c.upload_row_id)
            .where(_uploads.c.object_id.is_not(None)),
        )
    )
    # Parts of uploads without an object cannot be kept: released for GC.
    orphaned = (
        sa.select(_parts.c.layout_id)
        .join(_uploads, _uploads.c.id == _parts.c.upload_row_id)
        .where(_uploads.c.object_id.is_(None))
    )
    bind.execute(
        sa.update(_layouts)
        .where(
            _layouts.c.id.in_(orphaned),
            _layouts.c.state == "live",
            ~sa.exists().where(_object_parts.c.layout_id == _layouts.c.id),
            ~sa.exists().where(_upload_parts.c.layout_id == _layouts.c.id),
        )
        .values(released_at=datetime.now(UTC))
    )
    op.drop_index("ix_multipart_parts_layout_id", table_name="multipart_parts")
    op.drop_table("multipart_parts")
    op.drop_index("ix_uploads_updated_at", table_name="uploads")
    op.drop_index("ix_uploads_package_path", table_name="uploads")
    op.drop_table("uploads")
