"""Streaming uploads with bounded memory.

``/uploadObject`` reads the form's ``file`` part in parts of ``PART_SIZE``
(8 MiB, more when the request is too large for 10 000 such parts): a file
that fits in one part is sent with one ``PutObject``; a larger one with a
multipart upload — create, one ``UploadPart`` per part, complete — where the
next part is read from the client while the previous one is sent, so at most
two parts are in memory. Any failure aborts the upload.

``/uploadPart`` sends one part of the caller's own multipart upload, whose
size is not known before its end: it is spooled (in memory up to
``PART_SIZE``, on disk beyond) and sent with its length.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.api.gateway.s3client import S3

MiB = 1024 * 1024
IN_FLIGHT = 8  # parts sent at once by one upload (as boto3's managed transfer)
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000
SPOOL_WRITE = 1 * MiB


class PartReader:
    """Reads an async stream of chunks in pieces of a given size."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""
        self._eof = False
        self.total = 0

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        pieces = [self._left] if self._left else []
        have = len(self._left)
        self._left = b""
        while have < size and not self._eof:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._eof = True
                break
            pieces.append(chunk)
            have += len(chunk)
        data = b"".join(pieces)
        if len(data) > size:
            self._left = data[size:]
            data = data[:size]
        self.total += len(data)
        return data


def part_size_for(declared: int | None) -> int:
    """``PART_SIZE``, or a whole number of MiB that keeps an upload of
    ``declared`` bytes within ``MAX_PARTS`` parts."""
    if declared is None or declared <= PART_SIZE * MAX_PARTS:
        return PART_SIZE
    return -(-declared // (MAX_PARTS * MiB)) * MiB


async def upload_object(
    s3: S3,
    bucket: str,
    key: str,
    reader: PartReader,
    *,
    content_type: str | None = None,
    part_size: int = PART_SIZE,
) -> None:
    extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
    first = await reader.read(part_size)
    second = await reader.read(part_size) if len(first) == part_size else b""
    if not second:
        await s3.call("put_object", Bucket=bucket, Key=key, Body=first, **extra)
        return
    made = await s3.call("create_multipart_upload", Bucket=bucket, Key=key, **extra)
    upload_id = made["UploadId"]

    def send(number: int, data: bytes) -> dict[str, Any]:
        answer = s3.call_sync(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    # Up to IN_FLIGHT parts on their way while the next is read: memory is
    # at most (IN_FLIGHT + 1) parts, and the upload is not one round trip
    # per part (a direct S3 client keeps several parts in flight too).
    parts: list[dict[str, Any]] = []
    sending: list[asyncio.Task[dict[str, Any]]] = []
    try:
        number = 1
        sending.append(asyncio.create_task(asyncio.to_thread(send, number, first)))
        del first
        following = second
        del second
        while following:
            number += 1
            if number > MAX_PARTS:
                raise GatewayError(f"the file needs more than {MAX_PARTS} parts")
            if len(sending) >= IN_FLIGHT:
                parts.append(await sending.pop(0))
            sending.append(asyncio.create_task(asyncio.to_thread(send, number, following)))
            following = await reader.read(part_size)
        for task in sending:
            parts.append(await task)
        sending = []
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
        with contextlib.suppress(Exception):
            await s3.call("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        raise


async def spool(reader: PartReader) -> tuple[IO[bytes], int]:
    """The rest of the stream in a temporary file (memory up to ``PART_SIZE``)."""
    spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=PART_SIZE)  # noqa: SIM115
    size = 0
    try:
        while True:
            data = await reader.read(SPOOL_WRITE)
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


async def upload_part(
    s3: S3, bucket: str, key: str, upload_id: str, number: int, reader: PartReader
) -> str:
    body, size = await spool(reader)
    try:
        answer = await s3.call(
            "upload_part",
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
