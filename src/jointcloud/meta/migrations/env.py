"""Alembic environment: runs on the connection the service hands over
(``config.attributes["connection"]``), or on ``sqlalchemy.url`` for the CLI."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from jointcloud.meta.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
