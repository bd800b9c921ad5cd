"""A zip of a prefix, written as it is sent.

``zipfile`` writes to a stream that cannot seek (``_Sink`` has no ``tell``
or ``seek``): each entry then carries a data descriptor after its bytes, so
nothing is ever rewritten, and the archive leaves the server piece by piece
as the objects are read. Entries are stored (no compression: shared files
are mostly compressed already, and deflate would cost the server's CPU per
byte) and Zip64 where an entry or the archive needs it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from jointcloud.core.models import ObjectInfo

MAX_FILES = 10_000
MAX_BYTES = 10 * 1024**3
NOTE_NAME = "ZIP-TRUNCATED.txt"


class _Sink:
    """A write-only, non-seekable file for ``zipfile``: what was written is
    taken out with ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


@dataclass(frozen=True)
class Plan:
    """The objects that go in the zip, and whether a cap left some out."""

    objects: list[ObjectInfo]
    capped: bool
    reason: str = ""


_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f]")


def entry_name(path: str, prefix: str) -> str | None:
    """The name of ``path`` inside a zip of ``prefix``: relative, with no
    empty, ``.`` or ``..`` part (those become ``_``), no ``\\`` (a
    separator to Windows' extractors: ``_``) and no control character (an
    S3 key may hold one; extractors refuse it: ``_``); None for folder
    markers (paths ending in ``/``)."""
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    if not rest or rest.endswith("/"):
        return None
    rest = _UNSAFE.sub("_", rest)
    parts = [p if p not in ("", ".", "..") else "_" for p in rest.split("/")]
    return "/".join(parts)


def plan(objects: list[ObjectInfo], *, more: bool, max_files: int, max_bytes: int) -> Plan:
    """At most ``max_files`` objects and ``max_bytes`` bytes, in order."""
    chosen: list[ObjectInfo] = []
    total = 0
    for info in objects:
        if len(chosen) >= max_files:
            return Plan(chosen, True, f"more than {max_files} files")
        if total + info.size > max_bytes:
            return Plan(chosen, True, f"more than {max_bytes} bytes")
        chosen.append(info)
        total += info.size
    return Plan(chosen, more, f"more than {max_files} files" if more else "")


async def stream(
    plan: Plan,
    prefix: str,
    open_object: Callable[[ObjectInfo], Awaitable[AsyncIterator[bytes] | None]],
) -> AsyncIterator[bytes]:
    """The zip's bytes. ``open_object`` gives an object's bytes, or None to
    leave it out (it went away, or the access may not read it)."""
    sink = _Sink()
    skipped: list[str] = []
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for info in plan.objects:
            name = entry_name(info.path, prefix)
            if name is None:
                continue
            body = await open_object(info)
            if body is None:
                skipped.append(info.path)
                continue
            zinfo = zipfile.ZipInfo(name, date_time=_date_time(info))
            zinfo.compress_type = zipfile.ZIP_STORED
            zinfo.file_size = info.size
            zinfo.external_attr = 0o644 << 16
            with archive.open(zinfo, mode="w", force_zip64=info.size > 2**31) as out:
                async for chunk in body:
                    out.write(chunk)
                    data = sink.take()
                    if data:
                        yield data
            data = sink.take()
            if data:
                yield data
        if plan.capped or skipped:
            lines = []
            if plan.capped:
                lines.append(
                    f"This zip is incomplete: the folder holds {plan.reason}; "
                    f"it stops after {len(plan.objects)} files."
                )
            if skipped:
                lines.append(f"Left out ({len(skipped)}), gone or not readable with this link:")
                lines.extend(skipped)
            archive.writestr(NOTE_NAME, "\n".join(lines) + "\n")
    data = sink.take()
    if data:
        yield data


def _date_time(info: ObjectInfo) -> tuple[int, int, int, int, int, int]:
    t = info.update_time
    if t.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)
