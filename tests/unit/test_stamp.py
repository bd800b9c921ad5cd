"""Timestamps read on the driver's connection (meta/driver.py) are the same
instants SQLAlchemy returns for the same column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from jointcloud.meta.rows import stamp

_SQLITE_DATETIME = DateTime(timezone=True).dialect_impl(sqlite.dialect())


@given(st.datetimes(timezones=st.just(UTC)))
def test_sqlite_text_reads_back_as_the_stored_instant(when: datetime) -> None:
    stored = _SQLITE_DATETIME.bind_processor(sqlite.dialect())(when)  # type: ignore[misc]
    assert isinstance(stored, str)
    back = stamp(stored)
    assert back == when
    assert back.tzinfo is UTC


def test_text_with_an_offset_and_datetimes() -> None:
    assert stamp("2026-12-02 14:00:00+08:00") == datetime(2026, 12, 2, 6, tzinfo=UTC)
    naive = datetime(2026, 12, 2, 6, 30)
    assert stamp(naive) == naive.replace(tzinfo=UTC)
    other = datetime(2026, 12, 2, 14, tzinfo=timezone(timedelta(hours=8)))
    assert stamp(other) == other
