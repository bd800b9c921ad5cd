"""The streaming form reader: a form is whole only when its request body
ended, not when its closing boundary went by."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jointcloud.api.formdata import MAX_EPILOGUE, StreamingForm
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
