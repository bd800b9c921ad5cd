"""``http_date`` writes what ``email.utils.format_datetime(usegmt=True)``
writes (it replaced it on the read path), for any aware datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from jointcloud.api.common.http import http_date, parse_http_date
from jointcloud.api.s3 import sigv4_parse


def test_the_rfc_7231_example() -> None:
    assert (
        http_date(datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)) == "Sun, 06 Nov 1994 08:49:37 GMT"
    )


def test_another_zone_is_written_in_gmt() -> None:
    east = timezone(timedelta(hours=9))
    assert http_date(datetime(2026, 1, 1, 3, 0, 5, 999_999, tzinfo=east)) == (
        "Wed, 31 Dec 2025 18:00:05 GMT"
    )


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
)
def test_as_the_standard_library_writes_it(moment: datetime) -> None:
    written = http_date(moment)
    assert written == format_datetime(moment.astimezone(UTC), usegmt=True)
    if moment.astimezone(UTC).year >= 1000:  # below, email's parser reads 2-digit years
        parsed = parse_http_date(written)
        assert parsed is not None
        # By timestamps: == between zones is False for a time in a DST fold.
        assert parsed.timestamp() == moment.replace(microsecond=0).timestamp()


def test_a_year_past_the_calendar_is_no_date() -> None:
    """``email.utils`` raises ``OverflowError`` (not ``ValueError``) for a
    year past a C long: a request's 500 with a traceback (found by review,
    2026-12-07)."""
    for value in (
        "Fri, 31 Dec 99999999999999999 23:59:59 GMT",
        "Fri, 31 Dec 99999999999999999999999999 23:59:59 -0100",
    ):
        assert parse_http_date(value) is None
        assert sigv4_parse.parse_http_date(value) is None
