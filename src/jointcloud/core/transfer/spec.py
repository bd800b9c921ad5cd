"""Validation of transfer requests: paths, filters and triggers (docs/sync.md).

Everything a task needs later is normalised here into plain JSON, so that the
stored task is exactly what was accepted and can be parsed again after a
restart.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jointcloud.core.models import Compare, TaskMode
from jointcloud.core.paths import MAX_SEGMENT, check_chars, check_length, check_segments
from jointcloud.errors import BadArgument

INT64_MAX = 2**63 - 1  # IDs, sizes and counters are int64 in the database
MAX_INTERVAL = 366 * 24 * 3600  # a year (a leap one): "every N seconds" beyond is a mistake
MAX_LIST = 1000  # entries of one filter list
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


def join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if base else rel


def int_field(
    body: dict[str, Any], key: str, field: str, minimum: int = 0, maximum: int = INT64_MAX
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadArgument(f"{field} must be an integer ≥ {minimum}")
    if value > maximum:
        raise BadArgument(f"{field} must be at most {maximum}, got {value}")
    return value


def id_field(body: dict[str, Any], key: str, field: str | None = None) -> int:
    """A positive int64 ID given as a JSON integer (not a string, as every
    other endpoint), named ``field`` (default ``key``) in the message."""
    name = field or key
    value = body.get(key)
    if value is None:
        raise BadArgument(f"{name} is required and must be a positive integer")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadArgument(f"{name} must be a positive integer, got {_shown(value)}")
    if value > INT64_MAX:
        raise BadArgument(f"{name} must be at most {INT64_MAX} (int64), got {value}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    field = f"filter.{key}"
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadArgument(f"{field} must be a list of non-empty strings")
    if len(value) > MAX_LIST:
        raise BadArgument(f"{field} has {len(value)} entries; at most {MAX_LIST}")
    for i, v in enumerate(value):
        check_chars(v, f"{field}[{i}]")
        check_length(v, f"{field}[{i}]")
    return list(value)


@dataclass(frozen=True)
class TransferFilter:
    min_size: int | None = None
    max_size: int | None = None
    include_ext: tuple[str, ...] = ()
    exclude_ext: tuple[str, ...] = ()
    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: object) -> TransferFilter:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise BadArgument("filter must be an object")
        known = {"minSize", "maxSize", "includeExt", "excludeExt", "includePaths", "excludePaths"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadArgument(f"filter has unknown fields {unknown}; allowed: {sorted(known)}")
        lo = int_field(raw, "minSize", "filter.minSize")
        hi = int_field(raw, "maxSize", "filter.maxSize")
        if lo is not None and hi is not None and lo > hi:
            raise BadArgument("filter.minSize must not be larger than filter.maxSize")

        def exts(key: str) -> tuple[str, ...]:
            out = tuple(e.lower().lstrip(".") for e in _str_list(raw, key))
            for i, e in enumerate(out):
                if not e or "/" in e or "\\" in e or len(e.encode()) > MAX_SEGMENT:
                    raise BadArgument(
                        f"filter.{key}[{i}] must be a file name extension (no '/', '\\', "
                        f"at most {MAX_SEGMENT} bytes)"
                    )
            return out

        def pats(key: str) -> tuple[str, ...]:
            out = []
            for p in _str_list(raw, key):
                if _GLOB.search(p):
                    out.append(p.lstrip("/"))
                else:
                    out.append(transfer_path(p, f"filter.{key}"))
            return tuple(out)

        return cls(
            lo,
            hi,
            exts("includeExt"),
            exts("excludeExt"),
            pats("includePaths"),
            pats("excludePaths"),
        )

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

    @staticmethod
    def _path_match(rel: str, pattern: str) -> bool:
        if _GLOB.search(pattern):
            return fnmatch.fnmatchcase(rel, pattern)
        return pattern == "" or rel == pattern or rel.startswith(pattern + "/")

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
        if self.include_paths and not any(self._path_match(rel, p) for p in self.include_paths):
            return False
        return not any(self._path_match(rel, p) for p in self.exclude_paths)


def _hhmm(raw: object, field: str) -> time:
    if not isinstance(raw, str) or not (m := _HHMM.match(raw.strip())):
        raise BadArgument(f"{field} must be a time of day 'HH:MM' (00:00–23:59), got {_shown(raw)}")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Trigger:
    """When a task runs: ``once``, every ``seconds``, or inside a daily window."""

    type: str
    seconds: int = 0
    start: time | None = None
    end: time | None = None
    timezone: str = "UTC"

    @classmethod
    def parse(cls, raw: object) -> Trigger:
        if raw is None:
            return cls("once")
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise BadArgument("trigger must be an object with a 'type': once, interval or window")
        kind = raw["type"]
        if kind == "once":
            return cls("once")
        if kind == "interval":
            seconds = int_field(raw, "seconds", "trigger.seconds", minimum=1, maximum=MAX_INTERVAL)
            if seconds is None:
                raise BadArgument("trigger.seconds is required for an interval trigger")
            return cls("interval", seconds=seconds)
        if kind == "window":
            start = _hhmm(raw.get("start"), "trigger.start")
            end = _hhmm(raw.get("end"), "trigger.end")
            if start == end:
                raise BadArgument("trigger.start and trigger.end must differ (the window is empty)")
            tz = raw.get("timezone", "UTC")
            if not isinstance(tz, str) or not tz or len(tz) > 64:
                raise BadArgument("trigger.timezone must be an IANA time zone name")
            check_chars(tz, "trigger.timezone")
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise BadArgument(
                    f"trigger.timezone {_shown(tz)} is not a known IANA time zone "
                    "(e.g. 'Asia/Shanghai')"
                ) from None
            return cls("window", start=start, end=end, timezone=tz)
        raise BadArgument(f"trigger.type must be once, interval or window, got {_shown(kind)}")

    def to_json(self) -> dict[str, Any]:
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


def parse_mode(body: dict[str, Any]) -> tuple[TaskMode, Compare]:
    mode = body.get("mode", TaskMode.FULL)
    if mode not in tuple(TaskMode):  # by equality: an unhashable value is refused too
        raise BadArgument(f"mode must be 'full' or 'diff', got {_shown(mode)}")
    compare = body.get("compare", Compare.SIZE_MTIME)
    if compare not in tuple(Compare):
        raise BadArgument(f"compare must be 'sizeMtime' or 'hash', got {_shown(compare)}")
    return TaskMode(mode), Compare(compare)


def bool_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadArgument(f"{key} must be true or false")
    return value
