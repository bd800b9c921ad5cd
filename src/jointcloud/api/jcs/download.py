"""Streaming download responses with offset/length and standard ``Range``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from jointcloud.api.common.http import pieces
from jointcloud.api.jcs.envelope import fail
from jointcloud.context import Context
from jointcloud.core.models import ObjectContent
from jointcloud.errors import BadArgument

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    pass


def _position(digits: str) -> int:
    """A byte position of a Range header; thousands of digits (which int()
    refuses to convert) mean "beyond any object" as much as twenty do."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 2**64


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range → (offset, length); None means serve it all
    (multiple ranges or a syntax we ignore, as RFC 9110 allows)."""
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:  # RFC 9110 §14.1.3: no bytes to select
            raise Unsatisfiable
        return max(0, size - n), min(n, size)
    start = _position(first)
    if start >= size:
        raise Unsatisfiable
    end = min(_position(last), size - 1) if last else size - 1
    if end < start:
        return None
    return start, end - start + 1


async def send_object(
    request: Request,
    ctx: Context,
    content: ObjectContent,
    offset: int | None,
    length: int | None,
) -> Response:
    info = content.info
    status = 200
    header = request.headers.get("range")
    if header:
        if offset is not None or length is not None:
            raise BadArgument("use either offset/length or a Range header, not both")
        try:
            picked = parse_range(header, info.size)
        except Unsatisfiable:
            resp = fail(
                "BadArgument",
                f"range {header[:80]!r} is outside the object's {info.size} bytes",
                416,
            )
            resp.headers["Content-Range"] = f"bytes */{info.size}"
            return resp
        if picked is not None:
            offset, length = picked
            status = 206
    dl = ctx.objects.read(content, offset or 0, length)
    # Pull the first chunk before sending headers so that a read that cannot
    # be served at all still answers with a JSON error, not a broken stream.
    first = await anext(dl.body, b"")

    async def body() -> AsyncIterator[bytes]:
        if first:
            for piece in pieces(first):
                yield piece
        async for chunk in dl.body:
            for piece in pieces(chunk):
                yield piece

    headers = {
        "Content-Length": str(dl.length),
        "Content-Disposition": "attachment; filename=" + quote(info.path.rsplit("/", 1)[-1]),
        "Accept-Ranges": "bytes",
        "ETag": f'"{dl.info.etag}"',
    }
    if status == 206:
        end = dl.offset + dl.length - 1
        headers["Content-Range"] = f"bytes {dl.offset}-{end}/{dl.info.size}"
    if len(first) == dl.length:  # all of it in hand (small objects): no stream to run
        await dl.body.aclose()  # type: ignore[attr-defined]
        return Response(
            first, status_code=status, media_type="application/octet-stream", headers=headers
        )
    return StreamingResponse(
        body(), status_code=status, media_type="application/octet-stream", headers=headers
    )
