"""The v1 JSON envelope as written on the wire."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jointcloud.api.jcs import views
from jointcloud.api.jcs.envelope import fail, ok
from jointcloud.core.models import ContentHash, ObjectEntry
from jointcloud.redundancy.policy import EcPolicy, NonePolicy, RepPolicy


def test_answer_is_compact_utf8_json() -> None:
    body = ok({"name": "ünï 名前", "n": 2**53 + 1, "none": None}).body
    data = '"data":{"name":"ünï 名前","n":9007199254740993,"none":null}'
    assert body == ('{"code":"OK","message":"",' + data + "}").encode()


def test_lone_surrogate_is_escaped_not_a_failure() -> None:
    # No UTF-8 spells it: the answer escapes it rather than failing.
    r = fail("BadArgument", "bad name 'a\ud800'", 400)
    assert r.status_code == 400
    assert b"\\ud800" in r.body
    assert json.loads(bytes(r.body))["message"] == "bad name 'a\ud800'"


def test_listed_object_shape() -> None:
    t = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
    later = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    e = ObjectEntry(7, 3, "a/b.txt", 12, ContentHash("ab" * 32), NonePolicy(), t, later)
    out = json.loads(bytes(ok(views.obj(e)).body))["data"]
    assert out["objectID"] == 7 and out["packageID"] == 3 and out["path"] == "a/b.txt"
    assert out["size"] == "12"
    assert out["fileHash"] == "Full" + "AB" * 32
    assert out["redundancy"] == {"type": "none"}
    assert datetime.fromisoformat(out["createTime"]) == t
    assert datetime.fromisoformat(out["updateTime"]) == later


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata"])
def test_object_times_are_spelled_as_ts_spells_them(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The envelope writes an object's times (datetimes, for speed) exactly
    as ``views.ts`` spells every other time: RFC 3339 at the server's local
    offset, microseconds only when there are some; also through the
    fallback encoder that a lone surrogate elsewhere in the answer takes."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        times = [
            datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC),
            datetime(2026, 7, 2, 10, 0, 0, 123456, tzinfo=UTC),  # summer time where kept
        ]
        for t in times:
            e = ObjectEntry(7, 3, "a", 1, ContentHash("ab" * 32), NonePolicy(), t, t)
            for extra in ("", "\ud800"):
                data = {**views.obj(e), "note": extra}
                out = json.loads(bytes(ok(data).body))["data"]
                assert out["createTime"] == out["updateTime"] == views.ts(t), (zone, extra)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        # Newfoundland springs forward at 02:00 NST (-03:30), 05:30 UTC
        ("America/St_Johns", datetime(2025, 3, 9, 5, 30, tzinfo=UTC)),
        # Lord Howe Island moves by half an hour at 02:00 local (+10:30), 15:30 UTC
        ("Australia/Lord_Howe", datetime(2025, 10, 4, 15, 30, tzinfo=UTC)),
    ],
)
def test_times_carry_the_offset_of_their_instant_across_a_half_hour_change(
    zone: str, transition: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the time review: offsets were looked up once per hour since
    the epoch, but these zones change theirs at half past a UTC hour; the
    times of the following half hour carried the old offset, spelling local
    times that never were (02:10-03:30 on the day St. John's skips 02:xx)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for minutes in (-40, -10, 0, 10, 29, 31):
            t = transition + timedelta(minutes=minutes)
            expected = t.astimezone().isoformat()  # the system zone, at this instant
            assert views.ts(t) == expected, (zone, minutes)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_a_listing_shows_each_object_as_one_object_is_shown(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``views.objs`` (a listing's pieces, with its lookups hoisted) writes
    exactly what ``views.obj`` writes for each object: overwritten or not,
    whole or composite hash or none, times at UTC or at another offset,
    policies shared or not, on a server at UTC and on one that is not."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        t = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
        later = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
        east = timezone(timedelta(hours=8))
        entries = [
            ObjectEntry(1, 3, "a", 1, ContentHash("ab" * 32), NonePolicy(), t, t),
            ObjectEntry(2, 3, "b", 0, ContentHash(""), RepPolicy(2), t, later),
            ObjectEntry(3, 3, "c", 9, ContentHash("cd" * 32, True), EcPolicy(2, 3), t, t),
            ObjectEntry(4, 3, "d", 5, ContentHash("ef" * 32), RepPolicy(2), t.astimezone(east), t),
            ObjectEntry(
                5, 3, "e", 5, ContentHash("01" * 32), NonePolicy(), t, later.astimezone(east)
            ),
        ]
        expected = [views.obj(e) for e in entries]
        assert views.objs(entries) == expected
        rendered = json.loads(bytes(ok(views.objs(entries)).body))["data"]
        assert rendered == json.loads(bytes(ok(expected).body))["data"]
        assert [o["fileHash"] for o in rendered] == [
            "Full" + "AB" * 32, "", "Comp" + "CD" * 32, "Full" + "EF" * 32, "Full" + "01" * 32
        ]  # fmt: skip
        assert rendered[1]["updateTime"] == views.ts(later)
        assert rendered[3]["createTime"] == views.ts(t)
    finally:
        monkeypatch.undo()  # TZ as it was before the test, then read again
        time.tzset()
