"""Streaming uploads with bounded memory.

``/uploadObject`` reads the form's ``file`` part in parts of ``PART_SIZE``
(8 MiB, more when the request is too large for 10 000 such parts): a file
that fits in one part is sent with one ``PutObject``; a larger one with a
multipart upload — create, one ``UploadPart`` per part, complete — where the
next part is read from the client while up to ``IN_FLIGHT`` are sent. A part
is held in memory up to ``PART_SIZE`` and spooled to a temporary file
beyond, so memory stays bounded whatever length the request declares (the
part size follows the declared length, which the client chooses). Any
failure aborts the upload.

``/uploadPart`` sends one part of the caller's own multipart upload, whose
size is not known before its end: it is spooled (in memory up to
``PART_SIZE``, on disk beyond, at most ``MAX_PART``) and sent with its
length.

``Admission`` bounds how many uploads are read from callers at once. The
facade relays to whatever public S3 endpoint its caller names, so a caller
needs no account here; each upload may hold up to ``IN_FLIGHT`` + 1 parts
in memory for as long as its client takes (a review of 2026-12-07: a
stalled ``/uploadObject`` held 16 MiB, bounded before only by the
connection limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import IO, Any

from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.api.gateway.s3client import LONG_PATIENCE, S3
from jointcloud.core.uploads import UploadSlots

MiB = 1024 * 1024
# Parts sent at once by one upload. Two hide an UploadPart's round trip as
# well as eight did (0.79-0.84 of direct S3 against 0.75-0.83; one part:
# 0.62-0.63; bench/gateway_share.py) at a third of the memory
# (decisions.md, "Upload memory").
IN_FLIGHT = 2
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 * 1024 * MiB  # S3's largest object: 5 TiB
MAX_PART = 5 * 1024 * MiB  # S3's largest part: 5 GiB
FORM_SLACK = 1 * MiB  # a form's boundaries and fields around the file
SPOOL_WRITE = 1 * MiB


# Of the process's gateway uploads, the share one access key may hold: one
# caller (or one app's key) cannot take them all by itself.
KEY_SHARE = 4


class Admission:
    """At most ``total`` uploads read from callers at once in this process,
    ``total // KEY_SHARE`` (one at least) of one access key at one endpoint;
    one more is answered "busy" (``ServerBusy``) before its file is read."""

    def __init__(self, total: int) -> None:
        setting = "JCS_GATEWAY_MAX_UPLOADS"
        self.all = UploadSlots(total, whose="the gateway facade", setting=setting)
        self.per_key = UploadSlots(
            max(1, total // KEY_SHARE), whose="this access key", setting=f"{setting} / 4"
        )

    @contextlib.contextmanager
    def take(self, endpoint: str, access_key_id: str) -> Iterator[None]:
        with self.per_key.take((endpoint, access_key_id)), self.all.take(None):
            yield


class PartReader:
    """Reads an async stream of chunks in pieces of a given size."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._left: bytes = b""
        self._eof = False
        self.total = 0

    async def next(self, limit: int) -> bytes:
        """The next piece, of at most ``limit`` bytes (the rest is kept
        for the next call); empty at the end of the stream."""
        chunk, self._left = self._left, b""
        while not chunk:
            if self._eof:
                return b""
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._eof = True
                return b""
        if len(chunk) > limit:
            chunk, self._left = chunk[:limit], chunk[limit:]
        self.total += len(chunk)
        return chunk

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        pieces: list[bytes] = []
        have = 0
        while have < size and (piece := await self.next(size - have)):
            pieces.append(piece)
            have += len(piece)
        return b"".join(pieces)


def part_size_for(declared: int | None) -> int:
    """``PART_SIZE``, or a whole number of MiB that keeps an upload of
    ``declared`` bytes within ``MAX_PARTS`` parts. A request declared larger
    than the largest object (and its form) is refused before it is read."""
    if declared is None or declared <= PART_SIZE * MAX_PARTS:
        return PART_SIZE
    if declared > MAX_OBJECT + FORM_SLACK:
        raise GatewayError(
            f"the request declares {declared} bytes: an object holds at most "
            f"{MAX_OBJECT} bytes (5 TiB)"
        )
    return -(-declared // (MAX_PARTS * MiB)) * MiB


class Part:
    """One part's bytes: in memory up to ``PART_SIZE``, else in a spool file."""

    def __init__(self, body: bytes | IO[bytes], size: int) -> None:
        self.body = body
        self.size = size

    async def close(self) -> None:
        # The memory goes once the part is sent, whoever still holds it.
        if isinstance(self.body, bytes):
            self.body = b""
        elif isinstance(self.body, io.BytesIO):
            self.body.close()
        else:
            await asyncio.to_thread(self.body.close)


async def read_part(reader: PartReader, size: int) -> Part:
    """The next ``size`` bytes of ``reader`` (fewer at its end). Past
    1 MiB, into a ``BytesIO`` sized once and filled in place, each piece
    dropped once copied (joined, and cut after, a part was held two to three
    times over). Not a ``bytearray``: botocore's CRT signer copies it whole;
    nor a file in Python, which it reads 4 KiB a call (10 % slower)."""
    if size > PART_SIZE:
        body, got = await spool(reader, size)
        return Part(body, got)
    head = await reader.read(min(size, SPOOL_WRITE))
    if len(head) < SPOOL_WRITE or len(head) == size:  # a small file: no part sized
        return Part(head, len(head))
    buf = io.BytesIO()
    buf.seek(size - 1)
    buf.write(b"\0")
    buf.seek(0)
    buf.write(head)
    got = len(head)
    del head
    try:
        while got < size and (piece := await reader.next(size - got)):
            buf.write(piece)
            got += len(piece)
    except BaseException:
        buf.close()
        raise
    buf.truncate(got)
    buf.seek(0)
    return Part(buf, got)


async def upload_object(
    s3: S3,
    bucket: str,
    key: str,
    reader: PartReader,
    *,
    content_type: str | None = None,
    part_size: int = PART_SIZE,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Stream ``reader`` to ``bucket``/``key``. ``before_commit`` runs once the
    file is read and before the object becomes visible (PutObject, or the
    completion): a failure there leaves no object and replaces none."""
    extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
    first = await read_part(reader, part_size)
    try:
        second = await read_part(reader, part_size) if first.size == part_size else Part(b"", 0)
    except BaseException:
        await first.close()
        raise
    if not second.size:
        try:
            if before_commit is not None:
                await before_commit()
            await s3.call(
                "put_object",
                patience=LONG_PATIENCE,
                Bucket=bucket,
                Key=key,
                Body=first.body,
                ContentLength=first.size,
                **extra,
            )
        finally:
            await first.close()
        return
    try:
        made = await s3.call("create_multipart_upload", Bucket=bucket, Key=key, **extra)
    except BaseException:
        await first.close()
        await second.close()
        raise
    upload_id = made["UploadId"]

    async def send(number: int, part: Part) -> dict[str, Any]:
        try:
            answer = await s3.call(
                "upload_part",
                patience=LONG_PATIENCE,  # the part is read already: wait for a slot
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part.body,
                ContentLength=part.size,
            )
        finally:
            await part.close()
        return {"PartNumber": number, "ETag": answer["ETag"]}

    # Up to IN_FLIGHT parts on their way while the next is read: at most
    # (IN_FLIGHT + 1) parts are held (in memory up to PART_SIZE each, the
    # rest spooled), and the upload is not one round trip per part (a
    # direct S3 client keeps several parts in flight too).
    parts: list[dict[str, Any]] = []
    sending: list[asyncio.Task[dict[str, Any]]] = []
    following: Part | None = None
    try:
        number = 1
        sending.append(asyncio.create_task(send(number, first)))
        following = second
        while following.size:
            number += 1
            if number > MAX_PARTS:
                raise GatewayError(f"the file needs more than {MAX_PARTS} parts")
            if len(sending) >= IN_FLIGHT:
                parts.append(await sending.pop(0))
            sending.append(asyncio.create_task(send(number, following)))
            following = None
            following = await read_part(reader, part_size)
        for task in sending:
            parts.append(await task)
        sending = []
        if before_commit is not None:
            await before_commit()
        await s3.call(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        for task in sending:
            with contextlib.suppress(BaseException):
                await task
        if following is not None:
            await following.close()
        with contextlib.suppress(Exception):
            await s3.call("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        raise


async def spool(reader: PartReader, limit: int | None = None) -> tuple[IO[bytes], int]:
    """The rest of the stream, or its next ``limit`` bytes, in a temporary
    file (memory up to ``PART_SIZE``)."""
    spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=PART_SIZE)  # noqa: SIM115
    size = 0
    try:
        while limit is None or size < limit:
            step = SPOOL_WRITE if limit is None else min(SPOOL_WRITE, limit - size)
            data = await reader.read(step)
            if not data:
                break
            size += len(data)
            if size > PART_SIZE:
                await asyncio.to_thread(spooled.write, data)  # on disk by now
            else:
                spooled.write(data)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled, size


def check_part_declared(declared: int | None) -> None:
    """A request declared larger than a part (and its form) is refused
    before it is read."""
    if declared is not None and declared > MAX_PART + FORM_SLACK:
        raise GatewayError(_part_too_large(f"the request declares {declared} bytes: "))


def _part_too_large(why: str = "") -> str:
    return f"{why}a part holds at most {MAX_PART} bytes (S3's largest part)"


async def upload_part(
    s3: S3, bucket: str, key: str, upload_id: str, number: int, reader: PartReader
) -> str:
    # One byte past the cap tells a part over it: the spool stays bounded.
    body, size = await spool(reader, MAX_PART + 1)
    if size > MAX_PART:
        await asyncio.to_thread(body.close)
        raise GatewayError(_part_too_large())
    try:
        answer = await s3.call(
            "upload_part",
            patience=LONG_PATIENCE,
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=size,
        )
    finally:
        await asyncio.to_thread(body.close)
    return str(answer["ETag"])
