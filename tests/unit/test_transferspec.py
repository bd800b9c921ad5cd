"""Transfer request validation: paths, filters and triggers (docs/sync.md)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from jointcloud.api.jcs.transfers import parse_filter, parse_trigger
from jointcloud.core.models import SpaceState, UserSpace
from jointcloud.core.transfer.spec import (
    TransferFilter,
    Trigger,
    inside,
    same_storage,
    transfer_path,
)
from jointcloud.errors import BadArgument


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def assert_utc(ts: datetime | None) -> None:
    assert ts is not None
    assert ts.utcoffset() == timedelta(0), ts


# -- paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("/", ""),
        ("a", "a"),
        ("/a/b/", "a/b"),
        ("//a/b//", "a/b"),  # leading and trailing '/' are ignored
        ("a/.hidden/...", "a/.hidden/..."),  # dots inside names are fine
        ("数据/2024 年", "数据/2024 年"),
    ],
)
def test_transfer_path_normalises(raw: object, expected: str) -> None:
    assert transfer_path(raw, "srcPath") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        ".",
        "a/..",
        "../a",
        "a/../b",
        "a/./b",
        "./a",
        "a//b",
        "a/b//c/",
    ],
)
def test_transfer_path_rejects_escapes_and_empty_segments(raw: str) -> None:
    with pytest.raises(BadArgument, match=r"srcPath must stay inside the space"):
        transfer_path(raw, "srcPath")


@pytest.mark.parametrize("raw", ["a\x00b", "\x00", "a\\b", "..\\x", "\\"])
def test_transfer_path_rejects_nul_and_backslash(raw: str) -> None:
    with pytest.raises(BadArgument, match=r"dests\[0\]\.path must not contain NUL or '\\'"):
        transfer_path(raw, "dests[0].path")


def test_transfer_path_rejects_control_characters() -> None:
    with pytest.raises(BadArgument, match="control characters"):
        transfer_path("a\nb", "srcPath")


@pytest.mark.parametrize("raw", [5, 1.5, True, b"a", ["a"], {"a": 1}])
def test_transfer_path_rejects_non_strings(raw: object) -> None:
    with pytest.raises(BadArgument, match="rootPath must be a string"):
        transfer_path(raw, "rootPath")


@pytest.mark.parametrize(
    ("path", "parent", "expected"),
    [
        ("a", "a", True),
        ("a/b", "a", True),
        ("a/b/c", "a/b", True),
        ("ab", "a", False),
        ("ab/x", "a", False),
        ("a", "a/b", False),
        ("", "", True),
        ("anything/at/all", "", True),
        ("", "a", False),
        ("b/a", "a", False),
    ],
)
def test_inside(path: str, parent: str, expected: bool) -> None:
    assert inside(path, parent) is expected


# -- filters -------------------------------------------------------------------


def test_filter_none_and_empty_select_everything() -> None:
    for f in (parse_filter(None), parse_filter({})):
        assert f == TransferFilter()
        assert f.to_json() == {}
        assert f.selects("a/b.txt", 0)
        assert f.selects("noext", 10**12)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("minSize=1", "filter must be an object"),
        (["minSize"], "filter must be an object"),
        (
            {"minSize": 1, "maxsize": 2, "bogus": 0},
            r"filter has unknown fields \['bogus', 'maxsize'\]; allowed: \[",
        ),
        ({"minSize": -1}, "filter.minSize must be an integer ≥ 0"),
        ({"maxSize": -5}, "filter.maxSize must be an integer ≥ 0"),
        ({"minSize": 1.5}, "filter.minSize must be an integer ≥ 0"),
        ({"minSize": "10"}, "filter.minSize must be an integer ≥ 0"),
        ({"maxSize": True}, "filter.maxSize must be an integer ≥ 0"),
        ({"minSize": 11, "maxSize": 10}, "filter.minSize must not be larger than filter.maxSize"),
        ({"includeExt": "txt"}, "filter.includeExt must be a list of non-empty strings"),
        ({"excludeExt": ["txt", 3]}, "filter.excludeExt must be a list of non-empty strings"),
        ({"includePaths": "a/b"}, "filter.includePaths must be a list of non-empty strings"),
        ({"excludePaths": [""]}, "filter.excludePaths must be a list of non-empty strings"),
        ({"includePaths": ["../x"]}, "filter.includePaths must stay inside the space"),
        ({"excludePaths": ["a\\b"]}, "filter.excludePaths must not contain NUL"),
    ],
)
def test_filter_parse_rejects(raw: object, message: str) -> None:
    with pytest.raises(BadArgument, match=message):
        parse_filter(raw)


def test_filter_parse_normalises_and_round_trips() -> None:
    f = parse_filter(
        {
            "minSize": 0,
            "maxSize": 0,
            "includeExt": [".TXT", "Log"],
            "excludeExt": ["..tmp"],
            "includePaths": ["/docs/", "/*.md"],
            "excludePaths": ["docs/old"],
        }
    )
    assert f.min_size == 0 and f.max_size == 0
    assert f.include_ext == ("txt", "log")
    assert f.exclude_ext == ("tmp",)
    assert f.include_paths == ("docs", "*.md")
    assert f.exclude_paths == ("docs/old",)
    assert parse_filter(f.to_json()) == f
    assert TransferFilter.from_json(f.to_json()) == f  # the stored form


def test_filter_size_bounds_are_inclusive() -> None:
    f = parse_filter({"minSize": 10, "maxSize": 20})
    assert [s for s in (0, 9, 10, 11, 19, 20, 21) if f.selects("x", s)] == [10, 11, 19, 20]
    only_min = parse_filter({"minSize": 10})
    assert not only_min.selects("x", 9) and only_min.selects("x", 10**15)
    only_max = parse_filter({"maxSize": 0})
    assert only_max.selects("x", 0) and not only_max.selects("x", 1)


def test_filter_extensions_case_insensitive_with_or_without_dot() -> None:
    for spelled in (["txt"], [".txt"], ["TXT"], [".Txt"]):
        f = parse_filter({"includeExt": spelled})
        assert f.selects("a.txt", 1)
        assert f.selects("dir/B.TXT", 1)
        assert f.selects("x.y/c.tXt", 1)
        assert not f.selects("a.txt.gz", 1)
        assert not f.selects("atxt", 1)
        assert not f.selects("txt", 1)
    ex = parse_filter({"excludeExt": [".LOG"]})
    assert not ex.selects("a/b.log", 1)
    assert not ex.selects("a/b.Log", 1)
    assert ex.selects("a/b.logs", 1)
    assert ex.selects("log", 1)


def test_filter_files_without_extension() -> None:
    inc = parse_filter({"includeExt": ["txt"]})
    assert not inc.selects("README", 1)
    assert not inc.selects("dir.d/README", 1)  # the dot is in the directory
    exc = parse_filter({"excludeExt": ["d"]})
    assert exc.selects("dir.d/README", 1)  # no extension: never excluded by extension
    assert exc.selects("Makefile", 1)
    assert not exc.selects("conf/x.d", 1)


def test_filter_paths_are_directory_prefixes() -> None:
    f = parse_filter({"includePaths": ["a"]})
    assert f.selects("a", 1)  # the file itself
    assert f.selects("a/x", 1)
    assert f.selects("a/b/c/d.txt", 1)
    assert not f.selects("ab/x", 1)
    assert not f.selects("ab", 1)
    assert not f.selects("b/a", 1)
    assert not f.selects("a.txt", 1)
    nested = parse_filter({"includePaths": ["/a/b/"]})
    assert nested.selects("a/b/c", 1)
    assert not nested.selects("a/bc/d", 1)
    assert not nested.selects("a/c", 1)
    ex = parse_filter({"excludePaths": ["tmp"]})
    assert not ex.selects("tmp/x", 1)
    assert not ex.selects("tmp", 1)
    assert ex.selects("tmpfile", 1)
    assert ex.selects("tmp2/x", 1)
    assert ex.selects("x/tmp/y", 1)  # relative to srcPath, not anywhere


def test_filter_path_globs() -> None:
    star = parse_filter({"includePaths": ["*.log"]})
    assert star.selects("a.log", 1)
    assert star.selects("deep/dir/a.log", 1)  # '*' also matches '/'
    assert not star.selects("a.log.1", 1)
    assert not star.selects("a.txt", 1)
    mid = parse_filter({"includePaths": ["data/*/raw/*"]})
    assert mid.selects("data/2024/raw/x.bin", 1)
    assert mid.selects("data/2024/01/raw/x.bin", 1)
    assert not mid.selects("data/raw/x.bin", 1)
    qmark = parse_filter({"includePaths": ["f?.txt"]})
    assert qmark.selects("f1.txt", 1) and not qmark.selects("f10.txt", 1)
    klass = parse_filter({"excludePaths": ["/[ab]/*"]})
    assert klass.include_paths == () and klass.exclude_paths == ("[ab]/*",)
    assert not klass.selects("a/x", 1) and not klass.selects("b/y/z", 1)
    assert klass.selects("c/x", 1)
    assert klass.selects("ab/x", 1)


def test_filter_every_rule_must_pass() -> None:
    f = parse_filter(
        {
            "minSize": 2,
            "includeExt": ["txt"],
            "includePaths": ["docs"],
            "excludePaths": ["docs/old"],
            "excludeExt": ["bak"],
        }
    )
    assert f.selects("docs/a.txt", 2)
    assert not f.selects("docs/a.txt", 1)  # too small
    assert not f.selects("docs/a.md", 5)  # extension
    assert not f.selects("other/a.txt", 5)  # path
    assert not f.selects("docs/old/a.txt", 5)  # excluded path
    assert f.selects("docs/older/a.txt", 5)


# -- triggers: parsing ---------------------------------------------------------


def test_trigger_defaults_and_round_trip() -> None:
    assert parse_trigger(None) == Trigger("once")
    assert parse_trigger({"type": "once"}).to_json() == {"type": "once"}
    iv = parse_trigger({"type": "interval", "seconds": 1})
    assert iv == Trigger("interval", seconds=1)
    assert parse_trigger(iv.to_json()) == iv
    w = parse_trigger({"type": "window", "start": "7:05", "end": " 23:59 "})
    assert w.start == time(7, 5) and w.end == time(23, 59) and w.timezone == "UTC"
    assert w.to_json() == {"type": "window", "start": "07:05", "end": "23:59", "timezone": "UTC"}
    assert parse_trigger(w.to_json()) == w
    sh = parse_trigger(
        {"type": "window", "start": "22:00", "end": "06:00", "timezone": "Asia/Shanghai"}
    )
    assert parse_trigger(sh.to_json()) == sh
    for t in (iv, w, sh, Trigger("once")):
        assert Trigger.from_json(t.to_json()) == t  # the stored form


@pytest.mark.parametrize("bad", ["24:00", "7:5", "aa", "07:60", "12", "12:00:00", "-1:00", "", 700])
def test_trigger_window_rejects_bad_times(bad: object) -> None:
    with pytest.raises(BadArgument, match=r"trigger\.start must be a time of day 'HH:MM'"):
        parse_trigger({"type": "window", "start": bad, "end": "06:00"})
    with pytest.raises(BadArgument, match=r"trigger\.end must be a time of day 'HH:MM'"):
        parse_trigger({"type": "window", "start": "06:00", "end": bad})


def test_trigger_window_rejects_missing_times() -> None:
    with pytest.raises(BadArgument, match=r"trigger\.start"):
        parse_trigger({"type": "window", "end": "06:00"})
    with pytest.raises(BadArgument, match=r"trigger\.end"):
        parse_trigger({"type": "window", "start": "06:00"})


@pytest.mark.parametrize(
    ("start", "end"), [("08:00", "08:00"), ("8:00", "08:00"), ("00:00", "0:00")]
)
def test_trigger_window_rejects_empty_window(start: str, end: str) -> None:
    with pytest.raises(BadArgument, match="must differ"):
        parse_trigger({"type": "window", "start": start, "end": end})


@pytest.mark.parametrize(
    "tz",
    ["Mars/Olympus_Mons", "utc+8", "../../etc/passwd", "", 8, None, "localtime", "Factory"],
)
def test_trigger_window_rejects_unknown_timezone(tz: object) -> None:
    with pytest.raises(BadArgument, match=r"trigger\.timezone"):
        parse_trigger({"type": "window", "start": "01:00", "end": "02:00", "timezone": tz})


@pytest.mark.parametrize("seconds", [0, -1, -3600, True, False, "60", 1.5, None])
def test_trigger_interval_rejects_bad_seconds(seconds: object) -> None:
    with pytest.raises(BadArgument, match=r"trigger\.seconds"):
        parse_trigger({"type": "interval", "seconds": seconds})


def test_trigger_interval_requires_seconds() -> None:
    with pytest.raises(BadArgument, match=r"trigger\.seconds is required"):
        parse_trigger({"type": "interval"})


@pytest.mark.parametrize("raw", ["once", ["once"], {}, {"type": 1}, {"type": "cron"}])
def test_trigger_rejects_bad_shape(raw: object) -> None:
    with pytest.raises(BadArgument, match="trigger"):
        parse_trigger(raw)


# -- triggers: schedule --------------------------------------------------------


def window(start: str, end: str, tz: str = "UTC") -> Trigger:
    return parse_trigger({"type": "window", "start": start, "end": end, "timezone": tz})


def test_once_runs_now_and_never_again() -> None:
    t = parse_trigger(None)
    ts = utc(2026, 1, 1, 12)
    assert t.first_run(ts) == ts
    assert t.next_run(ts, ts + timedelta(hours=1)) is None


def test_interval_first_and_next_run() -> None:
    t = parse_trigger({"type": "interval", "seconds": 3600})
    started = utc(2026, 1, 1, 10)
    assert t.first_run(started) == started
    quick = t.next_run(started, started + timedelta(minutes=30))
    assert quick == utc(2026, 1, 1, 11)
    assert_utc(quick)
    slow = t.next_run(started, started + timedelta(minutes=90))
    assert slow == utc(2026, 1, 1, 11, 30)  # right after it ends
    exact = t.next_run(started, started + timedelta(hours=1))
    assert exact == utc(2026, 1, 1, 11)


def test_window_first_run_inside_and_outside() -> None:
    t = window("08:00", "10:00")
    inside_ts = utc(2026, 5, 4, 9, 15)
    assert t.first_run(inside_ts) == inside_ts
    assert_utc(t.first_run(inside_ts))
    assert t.first_run(utc(2026, 5, 4, 8)) == utc(2026, 5, 4, 8)  # start is inside
    before = t.first_run(utc(2026, 5, 4, 7, 59))
    assert before == utc(2026, 5, 4, 8)
    assert_utc(before)
    at_end = t.first_run(utc(2026, 5, 4, 10))  # end is outside
    assert at_end == utc(2026, 5, 5, 8)
    assert_utc(at_end)
    after = t.first_run(utc(2026, 5, 4, 23, 59))
    assert after == utc(2026, 5, 5, 8)


def test_window_crossing_midnight_utc() -> None:
    t = window("22:00", "06:00")
    at23 = utc(2026, 5, 4, 23)
    assert t.window_at(at23) == (utc(2026, 5, 4, 22), utc(2026, 5, 5, 6))
    assert t.first_run(at23) == at23
    at05 = utc(2026, 5, 5, 5)
    assert t.window_at(at05) == (utc(2026, 5, 4, 22), utc(2026, 5, 5, 6))
    assert t.first_run(at05) == at05
    noon = t.first_run(utc(2026, 5, 5, 12))
    assert noon == utc(2026, 5, 5, 22)
    assert_utc(noon)
    assert t.first_run(utc(2026, 5, 5, 6)) == utc(2026, 5, 5, 22)


def test_window_crossing_midnight_in_shanghai() -> None:
    t = window("22:00", "06:00", "Asia/Shanghai")  # UTC+8, no DST
    at23 = utc(2026, 1, 10, 15)  # 23:00 local
    assert t.first_run(at23) == at23
    at05 = utc(2026, 1, 10, 21)  # 05:00 local, Jan 11
    assert t.first_run(at05) == at05
    noon = t.first_run(utc(2026, 1, 10, 4))  # 12:00 local
    assert noon == utc(2026, 1, 10, 14)  # 22:00 local the same day
    assert_utc(noon)
    # A run that finished at 05:00 (in the window that opened yesterday)
    # next runs at tonight's start, not at yesterday's.
    nxt = t.next_run(utc(2026, 1, 10, 14), at05)
    assert nxt == utc(2026, 1, 11, 14)
    assert_utc(nxt)


def test_window_next_run_is_next_days_start() -> None:
    t = window("08:00", "10:00")
    started = utc(2026, 5, 4, 8)
    for finished in (utc(2026, 5, 4, 8, 1), utc(2026, 5, 4, 9, 59), utc(2026, 5, 4, 11)):
        nxt = t.next_run(started, finished)
        assert nxt == utc(2026, 5, 5, 8), finished
        assert_utc(nxt)
    late = window("22:00", "06:00")
    for finished in (utc(2026, 5, 4, 23), utc(2026, 5, 5, 5, 59)):
        assert late.next_run(utc(2026, 5, 4, 22), finished) == utc(2026, 5, 5, 22)


def test_window_spring_forward_berlin() -> None:
    t = window("08:00", "10:00", "Europe/Berlin")
    # 2026-03-28 is CET (UTC+1); 2026-03-29 is CEST (UTC+2) from 02:00.
    nxt = t.next_run(utc(2026, 3, 28, 7), utc(2026, 3, 28, 7, 30))
    assert nxt == utc(2026, 3, 29, 6)
    assert_utc(nxt)
    assert t.first_run(utc(2026, 3, 29, 5)) == utc(2026, 3, 29, 6)  # 07:00 CEST
    inside_ts = utc(2026, 3, 29, 6, 30)  # 08:30 CEST
    assert t.first_run(inside_ts) == inside_ts
    assert t.window_at(utc(2026, 3, 29, 7, 59)) is not None
    assert t.window_at(utc(2026, 3, 29, 8)) is None  # 10:00 CEST
    # A window spanning the jump: 01:00 CET .. 05:00 CEST is three real hours.
    night = window("01:00", "05:00", "Europe/Berlin")
    s, e = night.window_at(utc(2026, 3, 29, 2, 30))  # type: ignore[misc]
    assert (s, e) == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 3))
    assert night.first_run(utc(2026, 3, 29, 3, 30)) == utc(2026, 3, 29, 23)


def test_window_fall_back_berlin() -> None:
    t = window("08:00", "10:00", "Europe/Berlin")
    # 2026-10-24 is CEST (UTC+2); 2026-10-25 is CET (UTC+1) from 03:00.
    nxt = t.next_run(utc(2026, 10, 24, 6), utc(2026, 10, 24, 6, 30))
    assert nxt == utc(2026, 10, 25, 7)
    assert_utc(nxt)
    assert t.first_run(utc(2026, 10, 25, 6, 30)) == utc(2026, 10, 25, 7)  # 07:30 CET
    inside_ts = utc(2026, 10, 25, 8, 59)  # 09:59 CET
    assert t.first_run(inside_ts) == inside_ts
    night = window("01:00", "05:00", "Europe/Berlin")
    s, e = night.window_at(utc(2026, 10, 25, 3, 30))  # type: ignore[misc]
    assert (s, e) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 4))  # five real hours
    assert night.first_run(utc(2026, 10, 25, 4)) == utc(2026, 10, 26, 0)


def test_window_next_start_from_a_local_time_is_utc() -> None:
    t = window("08:00", "10:00", "Europe/Berlin")
    after = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    nxt = t.first_run(after)
    assert nxt == utc(2026, 7, 2, 6)
    assert_utc(nxt)


# -- the stored form of a task -------------------------------------------------


def test_stored_specs_of_earlier_rows_read_and_round_trip() -> None:
    from jointcloud.core.models import Compare, TaskKind, TaskMode
    from jointcloud.core.transfer.commands import SyncDest
    from jointcloud.core.transfer.tasks import (
        ExportSpec,
        ImportSpec,
        SyncSpec,
        spec_from_json,
        spec_to_json,
    )

    # As the first release stored them (no "compare" yet on a sync row).
    sync_row = {
        "srcUserSpaceID": 1,
        "srcPath": "data",
        "dests": [{"userSpaceID": 2, "path": "out"}],
        "mode": "diff",
        "trigger": {"type": "interval", "seconds": 60},
        "filter": {},
        "deleteSource": False,
    }
    sync = spec_from_json(TaskKind.SYNC, sync_row)
    assert sync == SyncSpec(
        1, "data", (SyncDest(2, "out"),), TaskMode.DIFF, Compare.SIZE_MTIME, Trigger("interval", 60)
    )
    assert spec_to_json(sync) == {**sync_row, "compare": "sizeMtime"}
    import_row = {
        "srcUserSpaceID": 1,
        "srcPath": "",
        "bucketID": 3,
        "name": "p",
        "packageID": 4,
        "affinity": None,
        "filter": {"excludeExt": ["tmp"]},
    }
    imp = spec_from_json(TaskKind.IMPORT, import_row)
    assert isinstance(imp, ImportSpec) and imp.filter == TransferFilter(exclude_ext=("tmp",))
    assert spec_to_json(imp) == import_row
    export_row = {"packageID": 4, "userSpaceID": 2, "rootPath": "x"}
    assert spec_from_json(TaskKind.EXPORT, export_row) == ExportSpec(4, 2, "x")
    assert spec_to_json(spec_from_json(TaskKind.EXPORT, export_row)) == export_row


def test_stored_interval_beyond_a_year_is_shown_but_not_run() -> None:
    stored = {"type": "interval", "seconds": 2**70}
    assert Trigger.from_json(stored, strict=False).seconds == 2**70
    with pytest.raises(BadArgument, match=r"trigger\.seconds must be at most"):
        Trigger.from_json(stored)


def _s3(space_id: int, endpoint: str, bucket: str = "b", **extra: object) -> UserSpace:
    storage = {"type": "S3", "endpoint": endpoint, "bucket": bucket, **extra}
    return UserSpace(
        space_id, 1, f"s{space_id}", storage, None, "", SpaceState.NORMAL, datetime.now(UTC)
    )


@pytest.mark.parametrize(
    "alias",
    [
        "https://s3.example.com/",  # a trailing '/'
        "https://S3.Example.COM",  # the host in capitals
        "https://s3.example.com:443",  # the default port written
        "HTTPS://s3.example.com//",
    ],
)
def test_one_bucket_reached_by_an_endpoint_written_otherwise_is_the_same_storage(
    alias: str,
) -> None:
    """The raw settings were compared: the same bucket counted as another
    storage, and a sync onto it overwrote its own source (found by review,
    2026-12-06)."""
    first = _s3(1, "https://s3.example.com", region="us-east-1", pathStyle=True)
    assert same_storage(first, _s3(2, alias, region="eu-west-1", pathStyle=False))
    # Another bucket, host, port or scheme is another storage.
    for other in ("https://s3.example.org", "https://s3.example.com:8443", "http://s3.example.com"):
        assert not same_storage(first, _s3(3, other))
    assert not same_storage(first, _s3(4, alias, bucket="c"))
