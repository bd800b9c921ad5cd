"""Metadata database: SQLAlchemy 2 (async) + Alembic. Tables are private here."""
