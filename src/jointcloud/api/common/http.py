"""HTTP pieces every protocol shares: byte ranges, conditional headers,
HTTP dates, handing large chunks to the transport in pieces, and asking
whether the client is still there."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from jointcloud.core.commands import ByteRange, Conditions

T = TypeVar("T")

SEND_PIECE = 1048576
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def pieces(chunk: bytes) -> list[bytes]:
    """Hand the transport 1 MiB at a time: a whole 4 MiB segment overflows the
    socket buffer and makes the server copy the rest into its own buffer."""
    if len(chunk) <= SEND_PIECE:
        return [chunk]
    view = memoryview(chunk)
    return [view[i : i + SEND_PIECE] for i in range(0, len(chunk), SEND_PIECE)]  # type: ignore[misc]


async def client_gone(receive: Callable[[], Awaitable[Any]]) -> bool:
    """Whether the client has closed the connection, once the request's body
    is all in, without waiting: ``receive`` runs up to its first suspension
    and no further. (A zero timeout around it cost a turn of the loop and a
    cancelled task, and Starlette's ``Request.is_disconnected`` an anyio
    cancel scope besides: each a tenth of a small upload's CPU.) An ASGI
    server's ``receive`` suspends only to wait for its next message, before
    taking it, so closing it there loses nothing."""
    step = receive().__await__()
    try:
        step.send(None)
    except StopIteration as done:
        return bool(done.value.get("type") == "http.disconnect")
    step.close()
    return False


# The ASGI extension (``scope["extensions"]``) by which a listener of
# ``api/common/connection.py`` tells a request how its client's connection
# ends: ``{"ends": ClientEnds}``, one per connection.
CLIENT_ENDS = "jointcloud.client_ends"


@dataclass(frozen=True)
class ClientEnds:
    """Events of a client's connection, as a request of it sees them."""

    # The client has ended its sending side: a half-close, or a close (the
    # server cannot tell them apart before it writes); answers still due.
    eof: asyncio.Event = field(default_factory=asyncio.Event)
    # The connection is lost (``receive`` says ``http.disconnect`` too).
    lost: asyncio.Event = field(default_factory=asyncio.Event)


def client_ends(scope: Mapping[str, Any]) -> ClientEnds | None:
    """The ``ClientEnds`` of this request's connection; ``None`` where the
    server does not say (another ASGI server, a test's transport)."""
    extension = (scope.get("extensions") or {}).get(CLIENT_ENDS)
    ends = extension.get("ends") if isinstance(extension, Mapping) else None
    return ends if isinstance(ends, ClientEnds) else None


class Gone(Exception):
    """The client went away before the work it asked for was done."""


async def unless_gone(
    receive: Callable[[], Awaitable[Any]] | None,
    work: Awaitable[T],
    *,
    ends: ClientEnds | None = None,
    grace: float = 0.0,
) -> T:
    """``work``'s result, or ``Gone`` once the client has gone away first:
    ``work`` is then cancelled, so what it waits on (a service that does not
    answer, a long listing) is not waited on for nobody.

    Gone is ``http.disconnect`` from ``receive`` (only for a request whose
    body is read by now: what ``receive`` still brings is dropped; ``None``
    where the body is yet to be read), or with ``ends``, the connection
    lost, or ``grace`` seconds after the client's EOF: a client that closed
    its socket sends the same FIN as one that only half-closed to read its
    answer, so the second gets that long, not the work's own deadline."""
    task = asyncio.ensure_future(work)

    async def left(receive: Callable[[], Awaitable[Any]]) -> None:
        while (await receive()).get("type") != "http.disconnect":
            pass

    async def closed(eof: asyncio.Event) -> None:
        await eof.wait()
        await asyncio.sleep(grace)

    watches: list[asyncio.Future[Any]] = []
    if receive is not None:
        watches.append(asyncio.ensure_future(left(receive)))
    if ends is not None:
        watches.append(asyncio.ensure_future(ends.lost.wait()))
        watches.append(asyncio.ensure_future(closed(ends.eof)))
    try:
        done, _ = await asyncio.wait((task, *watches), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request's own task cancelled: so is the work
        task.cancel()
        for watch in watches:
            watch.cancel()
        raise
    for watch in watches:
        watch.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise Gone()


def _position(digits: str) -> int:
    """A byte position; thousands of digits (which int() refuses to convert)
    mean "beyond any object" as much as twenty do."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 2**64


def parse_byte_range(header: str | None) -> ByteRange | None:
    """One ``bytes=first-last`` range, a suffix ``bytes=-N`` or an open
    ``bytes=N-``; ``None`` for no header or one that RFC 9110 lets a server
    ignore (several ranges, other units, ``last < first``): the whole object."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:
        return ByteRange(suffix=_position(last))
    start = _position(first)
    end = _position(last) if last else None
    if end is not None and end < start:
        return None
    return ByteRange(start, end)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (IMF-fixdate and the obsolete forms); ``None`` if absent
    or invalid (RFC 9110: an invalid date in a precondition is ignored)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year past a C long
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(value: datetime) -> str:
    """RFC 7231's IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), as
    ``email.utils.format_datetime(usegmt=True)`` writes it; by hand because
    that goes through a time tuple and showed in small reads' profiles."""
    t = value.astimezone(UTC)
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def etag_list(value: str | None) -> tuple[str, ...] | None:
    """The entity tags of an If-Match / If-None-Match header, quotes and weak
    prefixes off (``*`` stays ``*``)."""
    if value is None:
        return None
    tags = []
    for raw in value.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tag = tag.strip('"')
        if tag:
            tags.append(tag)
    return tuple(tags)


def parse_conditions(header: Callable[[str], str | None], prefix: str = "") -> Conditions:
    """``If-Match``, ``If-None-Match``, ``If-Modified-Since`` and
    ``If-Unmodified-Since`` (each name after ``prefix``, e.g.
    ``x-amz-copy-source-``) read with ``header(name)``."""
    return Conditions(
        if_match=etag_list(header(prefix + "if-match")),
        if_none_match=etag_list(header(prefix + "if-none-match")),
        if_modified_since=parse_http_date(header(prefix + "if-modified-since")),
        if_unmodified_since=parse_http_date(header(prefix + "if-unmodified-since")),
    )
