"""The streaming form reader: a form is whole only when its request body
ended, not when its closing boundary went by."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jointcloud.api.formdata import MAX_EPILOGUE, StreamingForm, then_end
from jointcloud.errors import BadArgument

BOUNDARY = b"b0undary"
FORM = (
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="files"; filename="a"\r\n\r\n'
    b"hello\r\n"
    b"--b0undary--"
)


class Gone(Exception):
    """The client went away (what Starlette's ClientDisconnect stands for)."""


async def body(*chunks: bytes, then_gone: bool = False) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if then_gone:
        raise Gone


async def read(form: StreamingForm) -> list[tuple[str | None, bytes]]:
    return [(part.filename, await part.read_all(1 << 20)) async for part in form.parts()]


async def test_a_whole_body_is_a_whole_form() -> None:
    got = await read(StreamingForm(body(FORM + b"\r\n"), BOUNDARY))
    assert got == [("a", b"hello")]
    # The CRLF after the closing boundary is optional (RFC 2046), and an
    # epilogue is ignored.
    assert await read(StreamingForm(body(FORM), BOUNDARY)) == [("a", b"hello")]
    assert await read(StreamingForm(body(FORM, b"\r\nan epilogue"), BOUNDARY)) == [("a", b"hello")]


async def test_a_body_cut_after_the_closing_boundary_is_no_form() -> None:
    # The last 2 bytes (the final CRLF) never came: the client went away.
    with pytest.raises(Gone):
        await read(StreamingForm(body(FORM, then_gone=True), BOUNDARY))


async def test_an_endless_epilogue_is_refused() -> None:
    epilogue = b"x" * (MAX_EPILOGUE + 1)
    with pytest.raises(BadArgument, match="after its closing boundary"):
        await read(StreamingForm(body(FORM, b"\r\n", epilogue), BOUNDARY))


# The file part, then a field "x" (its value to be added), then the end.
THEN_X = FORM[: -len(b"--")] + b'\r\nContent-Disposition: form-data; name="x"\r\n\r\n'


async def test_a_file_part_ends_only_with_its_request() -> None:
    parts = StreamingForm(body(THEN_X, b"late\r\n--b0undary--\r\n"), BOUNDARY).parts()
    file = await anext(parts)
    got = [chunk async for chunk in then_end(file.chunks(), parts)]
    assert b"".join(got) == b"hello"
    # cut after the file part: its last piece never comes
    parts = StreamingForm(body(THEN_X, b"la", then_gone=True), BOUNDARY).parts()
    file = await anext(parts)
    seen: list[bytes] = []
    with pytest.raises(Gone):
        async for chunk in then_end(file.chunks(), parts):
            seen.append(chunk)
    assert b"".join(seen) != b"hello"
    # what follows the file is bounded
    late = b"y" * (MAX_EPILOGUE + 1)
    parts = StreamingForm(body(THEN_X, late, b"\r\n--b0undary--"), BOUNDARY).parts()
    file = await anext(parts)
    with pytest.raises(BadArgument, match="after its file part"):
        async for _ in then_end(file.chunks(), parts):
            pass


async def test_empty_parts_after_the_file_count_too() -> None:
    """Found by review: only the data of what followed was counted, so
    empty parts could go on without end."""
    empty = b'--b0undary\r\nContent-Disposition: form-data; name="e"\r\n\r\n\r\n'
    many = empty * (MAX_EPILOGUE // 256 + 10)
    parts = StreamingForm(body(THEN_X, b"1\r\n", many, b"--b0undary--"), BOUNDARY).parts()
    file = await anext(parts)
    with pytest.raises(BadArgument, match="after its file part"):
        async for _ in then_end(file.chunks(), parts):
            pass
