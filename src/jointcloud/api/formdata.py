"""Pull-based streaming reader of ``multipart/form-data`` bodies.

Starlette's ``request.form()`` spools every file to a temporary file before
the handler sees it; uploads here must stream straight into the data plane,
so we drive python-multipart's push parser ourselves and hand each part out
as an async iterator of its bytes, one request chunk at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from jointcloud.errors import BadArgument

MAX_BOUNDARY = 200
MAX_EPILOGUE = 64 * 1024
PART_OVERHEAD = 256  # what ``drain`` counts for a part besides its data


def boundary_of(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadArgument("request must be multipart/form-data with a boundary")
    boundary: bytes = params[b"boundary"]
    if len(boundary) > MAX_BOUNDARY:
        # RFC 2046 allows 70; the parser refuses over 256 with its own error
        raise BadArgument(f"the multipart boundary is longer than {MAX_BOUNDARY} bytes")
    return boundary


class FormPart:
    def __init__(self, form: StreamingForm, headers: dict[str, str]) -> None:
        self._form = form
        disposition = headers.get("content-disposition", "")
        _, params = parse_options_header(disposition.encode("latin-1", "replace"))
        self.name = params.get(b"name", b"").decode("utf-8", "replace")
        # ``filename`` only: RFC 7578 (4.2) rules out RFC 5987's ``filename*``
        # in forms, and the header parser drops it.
        self.filename: str | None
        if b"filename" in params:
            try:
                self.filename = params[b"filename"].decode("utf-8")
            except UnicodeDecodeError:
                raise BadArgument("a form part's filename is not valid UTF-8") from None
        else:
            self.filename = None
        self.content_type = headers.get("content-type")
        self.done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.done:
            data = await self._form.part_data()
            if data is None:
                self.done = True
            elif data:
                yield data

    async def read_all(self, limit: int) -> bytes:
        buf = bytearray()
        async for chunk in self.chunks():
            buf += chunk
            if len(buf) > limit:
                raise BadArgument(f"form part {self.name!r} is larger than {limit} bytes")
        return bytes(buf)

    async def drain(self) -> None:
        async for _ in self.chunks():
            pass


class StreamingForm:
    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events: deque[tuple[str, bytes]] = deque()
        self._finished = False
        cb = self._events.append
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": lambda: cb(("begin", b"")),
                "on_header_field": lambda d, s, e: cb(("hfield", d[s:e])),
                "on_header_value": lambda d, s, e: cb(("hvalue", d[s:e])),
                "on_header_end": lambda: cb(("hend", b"")),
                "on_headers_finished": lambda: cb(("hdone", b"")),
                "on_part_data": lambda d, s, e: cb(("data", d[s:e])),
                "on_part_end": lambda: cb(("end", b"")),
                "on_end": lambda: cb(("finish", b"")),
            },
        )

    async def _next(self) -> tuple[str, bytes]:
        while not self._events:
            if self._finished:
                raise BadArgument("multipart body ended before its closing boundary")
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._finished = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise BadArgument(f"malformed multipart body: {exc}") from exc
        return self._events.popleft()

    async def _rest(self) -> None:
        """After the closing boundary the request body must still end: a
        client that goes away short of its declared length has not sent its
        form, so nothing of it may be committed. What follows the boundary
        (an epilogue, RFC 2046) is ignored, up to a bound."""
        if self._finished:
            return
        seen = 0
        async for chunk in self._body:
            seen += len(chunk)
            if seen > MAX_EPILOGUE:
                raise BadArgument(
                    f"the multipart body goes on for more than {MAX_EPILOGUE} bytes "
                    "after its closing boundary"
                )
        self._finished = True

    async def part_data(self) -> bytes | None:
        """Data of the current part queued so far (joined), or None at its end."""
        kind, data = await self._next()
        if kind == "end":
            return None
        if kind != "data":
            raise BadArgument("malformed multipart body")
        pieces = [data]
        while self._events and self._events[0][0] == "data":
            pieces.append(self._events.popleft()[1])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def parts(self) -> AsyncIterator[FormPart]:
        current: FormPart | None = None
        while True:
            if current is not None and not current.done:
                await current.drain()
            kind, _ = await self._next()
            if kind == "finish":
                await self._rest()
                return
            if kind != "begin":
                raise BadArgument("malformed multipart body")
            headers: dict[str, str] = {}
            field = b""
            while True:
                kind, data = await self._next()
                if kind == "hfield":
                    field += data
                elif kind == "hvalue":
                    key = field.decode("latin-1").lower()
                    # latin-1 keeps the raw bytes: FormPart decodes the filename
                    # as UTF-8 from them (decoding here lost non-latin-1 names).
                    headers[key] = headers.get(key, "") + data.decode("latin-1")
                elif kind == "hend":
                    field = b""
                elif kind == "hdone":
                    break
            current = FormPart(self, headers)
            yield current


async def drain(parts: AsyncIterator[FormPart], limit: int = MAX_EPILOGUE) -> None:
    """Read and drop the parts that follow the one a request is for, to the
    form's end and the request body's (``StreamingForm._rest``), up to
    ``limit`` bytes of them."""
    seen = 0
    async for part in parts:
        seen += PART_OVERHEAD  # empty parts are not free: their headers came
        async for chunk in part.chunks():
            seen += len(chunk)
            if seen > limit:
                break
        if seen > limit:
            raise BadArgument(f"the form goes on for more than {limit} bytes after its file part")


async def then_end(
    chunks: AsyncIterator[bytes], parts: AsyncIterator[FormPart]
) -> AsyncIterator[bytes]:
    """A file part's bytes, the last piece held back until the rest of the
    form has come (``drain``): whoever commits at the end of the bytes
    commits only a request that ended."""
    held: bytes | None = None
    async for piece in chunks:
        if held is not None:
            yield held
        held = piece
    await drain(parts)
    if held is not None:
        yield held
