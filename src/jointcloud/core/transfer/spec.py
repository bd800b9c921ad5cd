"""Transfer tasks in the domain's terms: paths, filters and triggers (docs/sync.md).

The rules that are about the domain live here — a path stays inside its
space and out of JointCloud's block area, an interval is at most a year, a
window is not empty and its time zone is known, a filter list is bounded.
Each check takes the *label* under which the caller's protocol sent the
value (e.g. ``"dests[1].path"``), so messages name the field the client
wrote; parsing a protocol's JSON into these types is the protocol's job
(``api/jcs/transfers.py`` for the v1 API).

``to_json``/``from_json`` are the *stored* form of a filter and a trigger in
a task's ``spec`` column: existing rows must keep reading, so its keys never
change.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jointcloud.core.models import UserSpace
from jointcloud.core.paths import MAX_SEGMENT, check_chars, check_length, check_segments
from jointcloud.errors import BadArgument
from jointcloud.spaces.registry import storage_identity

INT64_MAX = 2**63 - 1  # IDs, sizes and counters are int64 in the database
MAX_INTERVAL = 366 * 24 * 3600  # a year (a leap one): "every N seconds" beyond is a mistake
MAX_LIST = 1000  # entries of one filter list
# Wildcards (``*``, ``?``, ``[``) in one glob pattern. Translating a pattern
# costs in proportion to the square of its wildcards: a review sent 1,000
# patterns of 500 ``*`` each and held the event loop (every client) 6.6 s.
MAX_WILDCARDS = 16
MAX_TZ = 64  # characters of a time zone name
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_GLOB = re.compile(r"[*?\[]")


def transfer_path(raw: object, field: str) -> str:
    """A directory relative to the storage root; ``""`` is the whole storage."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise BadArgument(f"{field} must be a string")
    if "\x00" in raw or "\\" in raw:
        raise BadArgument(f"{field} must not contain NUL or '\\': {raw[:80]!r}")
    check_chars(raw, field)  # control characters, lone surrogates
    path = raw.strip("/")
    if not path:
        return ""
    check_length(path, field)
    segments = path.split("/")
    if any(p in ("", ".", "..") for p in segments):
        raise BadArgument(
            f"{field} must stay inside the space: no '..', '.' or empty segments in {raw[:80]!r}"
        )
    check_segments(segments, field)
    return path


def inside(path: str, parent: str) -> bool:
    """Whether directory ``path`` is ``parent`` or below it (``""`` is the root)."""
    return parent == "" or path == parent or path.startswith(parent + "/")


def overlap(a: str, b: str) -> bool:
    """Whether one of two directories is the other or below it."""
    return inside(a, b) or inside(b, a)


def same_storage(a: UserSpace, b: UserSpace) -> bool:
    """Whether two user spaces reach the same files at the same transfer
    path: one space, or two recorded on one storage however its settings
    are written (two S3 spaces on one bucket, one endpoint with a trailing
    '/'; Local spaces never share a directory)."""
    return a.user_space_id == b.user_space_id or storage_identity(a.storage) == storage_identity(
        b.storage
    )


def join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if base else rel


def shown(value: object) -> str:
    """A value as quoted in a message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- filters -------------------------------------------------------------------


def check_list(values: list[str], field: str) -> list[str]:
    """A filter list: at most MAX_LIST entries, each a clean bounded text."""
    if len(values) > MAX_LIST:
        raise BadArgument(f"{field} has {len(values)} entries; at most {MAX_LIST}")
    for i, v in enumerate(values):
        check_chars(v, f"{field}[{i}]")
        check_length(v, f"{field}[{i}]")
    return values


def extensions(values: list[str], field: str) -> tuple[str, ...]:
    """File name extensions, lower case without the dot (``".TXT"`` → ``"txt"``)."""
    out = tuple(e.lower().lstrip(".") for e in check_list(values, field))
    for i, e in enumerate(out):
        if not e or "/" in e or "\\" in e or len(e.encode()) > MAX_SEGMENT:
            raise BadArgument(
                f"{field}[{i}] must be a file name extension (no '/', '\\', "
                f"at most {MAX_SEGMENT} bytes)"
            )
    return out


def path_patterns(values: list[str], field: str) -> tuple[str, ...]:
    """Directories (normalised as paths) or glob patterns (``*``, ``?``, ``[``)."""
    out = []
    for i, p in enumerate(check_list(values, field)):
        wildcards = len(_GLOB.findall(p))
        if wildcards > MAX_WILDCARDS:
            raise BadArgument(
                f"{field}[{i}] has {wildcards} wildcards ('*', '?', '['); at most {MAX_WILDCARDS}"
            )
        out.append(p.lstrip("/") if wildcards else transfer_path(p, field))
    return tuple(out)


class _File(Protocol):
    @property
    def rel(self) -> str: ...

    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=_File)


class _Patterns:
    """Path patterns prepared once per filter: the directories as a set and
    a tuple of prefixes, the globs compiled. Each glob on its own: joined
    into one expression, 1,000 long ones made 28 MB that ``re`` would keep
    in its cache of 512, one per distinct filter a client sends."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        globs = [p for p in patterns if _GLOB.search(p)]
        plain = [p for p in patterns if not _GLOB.search(p)]
        self.everything = "" in plain
        self.exact = frozenset(plain)
        self.under = tuple(p + "/" for p in plain)
        self.globs = [re.compile(fnmatch.translate(p)) for p in globs]

    def match(self, rel: str) -> bool:
        return (
            self.everything
            or rel in self.exact
            or rel.startswith(self.under)
            or any(g.match(rel) is not None for g in self.globs)
        )


@dataclass(frozen=True)
class TransferFilter:
    """Which files a transfer takes; the empty filter takes every file."""

    min_size: int | None = None
    max_size: int | None = None
    include_ext: tuple[str, ...] = ()
    exclude_ext: tuple[str, ...] = ()
    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()

    def check_sizes(self, min_field: str, max_field: str) -> None:
        lo, hi = self.min_size, self.max_size
        if lo is not None and hi is not None and lo > hi:
            raise BadArgument(f"{min_field} must not be larger than {max_field}")

    # The stored form (a task's spec column): keys fixed by existing rows.
    _KEYS = ("minSize", "maxSize", "includeExt", "excludeExt", "includePaths", "excludePaths")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.min_size is not None:
            out["minSize"] = self.min_size
        if self.max_size is not None:
            out["maxSize"] = self.max_size
        for key, value in (
            ("includeExt", self.include_ext),
            ("excludeExt", self.exclude_ext),
            ("includePaths", self.include_paths),
            ("excludePaths", self.exclude_paths),
        ):
            if value:
                out[key] = list(value)
        return out

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> TransferFilter:
        """A filter as stored by ``to_json`` (already checked when accepted)."""
        if not stored:
            return cls()
        return cls(
            stored.get("minSize"),
            stored.get("maxSize"),
            tuple(stored.get("includeExt", ())),
            tuple(stored.get("excludeExt", ())),
            tuple(stored.get("includePaths", ())),
            tuple(stored.get("excludePaths", ())),
        )

    @functools.cached_property
    def _included(self) -> _Patterns:
        return _Patterns(self.include_paths)

    @functools.cached_property
    def _excluded(self) -> _Patterns:
        return _Patterns(self.exclude_paths)

    async def chosen(self, items: list[T]) -> list[T]:
        """Those of ``items`` (files with ``rel`` and ``size``) this filter
        selects, worked out in a thread: a tree of many files against many
        patterns is seconds of matching, which must not hold the event loop
        (and every other client) that long."""
        if self == TransferFilter():
            return items
        return await asyncio.to_thread(lambda: [i for i in items if self.selects(i.rel, i.size)])

    def selects(self, rel: str, size: int) -> bool:
        if self.min_size is not None and size < self.min_size:
            return False
        if self.max_size is not None and size > self.max_size:
            return False
        name = rel.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if self.include_ext and ext not in self.include_ext:
            return False
        if ext and ext in self.exclude_ext:
            return False
        if self.include_paths and not self._included.match(rel):
            return False
        return not (self.exclude_paths and self._excluded.match(rel))


# -- triggers ------------------------------------------------------------------


def time_of_day(raw: object, field: str) -> time:
    """``"HH:MM"`` (00:00–23:59; one-digit hours and surrounding blanks allowed)."""
    if not isinstance(raw, str) or not (m := _HHMM.match(raw.strip())):
        raise BadArgument(f"{field} must be a time of day 'HH:MM' (00:00–23:59), got {shown(raw)}")
    return time(int(m.group(1)), int(m.group(2)))


# Files of the system's zone database that name no zone: "localtime" is
# whatever zone the server runs in (a review found it taken), "Factory" a
# placeholder; IANA's own "posixrules" is not a zone either.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def time_zone(raw: object, field: str) -> str:
    """An IANA time zone name this machine knows."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TZ:
        raise BadArgument(f"{field} must be an IANA time zone name")
    check_chars(raw, field)
    try:
        if raw in _NOT_ZONES:
            raise ZoneInfoNotFoundError(raw)
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadArgument(
            f"{field} {shown(raw)} is not a known IANA time zone (e.g. 'Asia/Shanghai')"
        ) from None
    return raw


def check_interval(seconds: int, field: str) -> int:
    """At most a year between runs (``seconds`` ≥ 1 is the caller's type check)."""
    if seconds > MAX_INTERVAL:
        raise BadArgument(f"{field} must be at most {MAX_INTERVAL}, got {seconds}")
    return seconds


@dataclass(frozen=True)
class Trigger:
    """When a task runs: ``once``, every ``seconds``, or inside a daily window."""

    type: str
    seconds: int = 0
    start: time | None = None
    end: time | None = None
    timezone: str = "UTC"

    @classmethod
    def window(
        cls, start: time, end: time, timezone: object, fields: tuple[str, str, str]
    ) -> Trigger:
        """A daily window from ``start`` to ``end`` (past midnight if ``end``
        is earlier) in ``timezone``; ``fields`` label the three values."""
        start_field, end_field, tz_field = fields
        if start == end:
            raise BadArgument(f"{start_field} and {end_field} must differ (the window is empty)")
        return cls("window", start=start, end=end, timezone=time_zone(timezone, tz_field))

    def to_json(self) -> dict[str, Any]:
        """The stored form (a task's spec column): keys fixed by existing rows."""
        if self.type == "interval":
            return {"type": "interval", "seconds": self.seconds}
        if self.type == "window":
            assert self.start is not None and self.end is not None
            return {
                "type": "window",
                "start": self.start.strftime("%H:%M"),
                "end": self.end.strftime("%H:%M"),
                "timezone": self.timezone,
            }
        return {"type": "once"}

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None, *, strict: bool = True) -> Trigger:
        """A trigger as stored by ``to_json``; a stored value that breaks a
        bound added later (an interval beyond a year) is refused here,
        naming the stored key (``trigger.seconds``), unless not ``strict``
        (to show the task as it was stored)."""
        if not stored or stored.get("type") == "once":
            return cls("once")
        if stored.get("type") == "interval":
            seconds = stored.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
                raise BadArgument(f"trigger.seconds must be an integer ≥ 1, got {shown(seconds)}")
            if strict:
                check_interval(seconds, "trigger.seconds")
            return cls("interval", seconds=seconds)
        if stored.get("type") == "window":
            start = time_of_day(stored.get("start"), "trigger.start")
            end = time_of_day(stored.get("end"), "trigger.end")
            fields = ("trigger.start", "trigger.end", "trigger.timezone")
            return cls.window(start, end, stored.get("timezone", "UTC"), fields)
        kind = shown(stored.get("type"))
        raise BadArgument(f"trigger.type must be once, interval or window, got {kind}")

    # -- windows ---------------------------------------------------------------

    def _window_on(self, day: date) -> tuple[datetime, datetime]:
        assert self.start is not None and self.end is not None
        tz = ZoneInfo(self.timezone)
        s = datetime.combine(day, self.start, tz)
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        return s, datetime.combine(end_day, self.end, tz)

    def window_at(self, ts: datetime) -> tuple[datetime, datetime] | None:
        """The window containing ``ts``, if any."""
        local = ts.astimezone(ZoneInfo(self.timezone)).date()
        for d in (-1, 0):
            s, e = self._window_on(local + timedelta(days=d))
            if s <= ts < e:
                return s, e
        return None

    def next_window_start(self, after: datetime) -> datetime:
        local = after.astimezone(ZoneInfo(self.timezone)).date()
        for d in (0, 1, 2):
            s, _ = self._window_on(local + timedelta(days=d))
            if s > after:
                return s.astimezone(UTC)  # stored as UTC: SQLite keeps no offset
        raise AssertionError("a daily window starts within two days")

    # -- schedule --------------------------------------------------------------

    def first_run(self, ts: datetime) -> datetime:
        if self.type == "window" and self.window_at(ts) is None:
            return self.next_window_start(ts)
        return ts

    def next_run(self, started: datetime, finished: datetime) -> datetime | None:
        """When the run after one that started and finished at these times begins."""
        if self.type == "interval":
            # Bounded again here: a task stored before the bound existed
            # must not overflow the date arithmetic on every run.
            seconds = min(self.seconds, MAX_INTERVAL)
            return max(started + timedelta(seconds=seconds), finished)
        if self.type == "window":  # one complete run per window
            current = self.window_at(finished)
            return self.next_window_start(current[0] if current else finished)
        return None
