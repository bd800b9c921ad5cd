"""Streaming download responses with offset/length and standard ``Range``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from jointcloud.api.common.http import parse_byte_range, pieces
from jointcloud.api.jcs.envelope import fail
from jointcloud.context import Context
from jointcloud.core.commands import resolve_range
from jointcloud.core.models import ObjectContent
from jointcloud.errors import BadArgument, InvalidRange


def _disposition(path: str) -> str:
    """``attachment`` named by the last named segment (an S3 folder marker,
    ``dir/``, is ``dir``, as the gateway names it). ``filename`` is the
    URL-escaped name the v1 API has always sent; a name that escaping
    changes also goes as RFC 6266's ``filename*``, so that a browser saves
    ``café.txt``, not ``caf%C3%A9.txt`` (cross-protocol review, 2026-12-07)."""
    name = path.rstrip("/").rsplit("/", 1)[-1] or "download"
    escaped = quote(name)
    if escaped == name:
        return f"attachment; filename={name}"
    return f"attachment; filename={escaped}; filename*=UTF-8''{quote(name, safe='')}"


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
        # The one parser of every protocol: a header RFC 9110 lets a server
        # ignore (several ranges, other units, ``last < first``) is None.
        rng = parse_byte_range(header)
        try:
            picked = None if rng is None else resolve_range(rng, info.size)
        except InvalidRange:
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
        "Content-Disposition": _disposition(info.path),
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
