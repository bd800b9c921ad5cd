"""Listings from an S3 service that never ends them (found by review,
2026-12-06, seventh session): the facade reads a bounded number of pages,
stops on a page that makes no progress, and answers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from gw_support import Backend, Gw, read, unique

from jointcloud.api.gateway import listing

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


class Endless:
    """An S3 service on loopback whose listings never end: every page says
    it is truncated. ``same``: its next marker never changes; else it is
    new on every page. ``filled``: each page holds one item."""

    def __init__(self, *, same: bool, filled: bool) -> None:
        self.same = same
        self.filled = filled
        self.requests = 0
        self.counter = itertools.count(1)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def _page(self, target: str) -> str:
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        n = 1 if self.same else next(self.counter)
        if "uploadId" in query:
            part = (
                f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;e&quot;</ETag><Size>5</Size></Part>"
            )
            return (
                f"<ListPartsResult {NS}><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>"
                f"<NextPartNumberMarker>{n}</NextPartNumberMarker><IsTruncated>true</IsTruncated>"
                f"{part if self.filled else ''}</ListPartsResult>"
            )
        if "uploads" in query:
            upload = (
                f"<Upload><Key>k{n}</Key><UploadId>u{n}</UploadId>"
                "<Initiated>2026-12-06T00:00:00.000Z</Initiated></Upload>"
            )
            return (
                f"<ListMultipartUploadsResult {NS}><Bucket>b</Bucket>"
                f"<NextKeyMarker>k{n}</NextKeyMarker><NextUploadIdMarker>u{n}</NextUploadIdMarker>"
                f"<IsTruncated>true</IsTruncated>{upload if self.filled else ''}"
                "</ListMultipartUploadsResult>"
            )
        item = f"<Contents><Key>k{n}</Key><Size>1</Size></Contents>"
        return (
            f"<ListBucketResult {NS}><Name>b</Name><KeyCount>0</KeyCount>"
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{n}</NextContinuationToken>"
            f"{item if self.filled else ''}</ListBucketResult>"
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                target = head.split(b" ", 2)[1].decode()
                body = self._page(target).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for writer in self.writers:  # a listing still going on ends here
            writer.transport.abort()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def endless(request: pytest.FixtureRequest) -> AsyncIterator[Endless]:
    same, filled = request.param
    service = Endless(same=same, filled=filled)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def headers(endpoint: str) -> dict[str, str]:
    return {"AccessKeyId": "AKIDENDLESS", "SecretKey": "not-a-secret", "Endpoint": endpoint}


CALLS = [
    ("/listObjects", {"bucket": "b"}, "ListObjectsV2"),
    ("/listMultipartUploads", {"bucket": "b"}, "ListMultipartUploads"),
    ("/listParts", {"bucket": "b", "key": "k", "upload_id": "u"}, "ListParts"),
]


@pytest.mark.parametrize(
    ("endless", "why", "requests"),
    [
        (
            (False, False),
            f"the facade reads at most {listing.MAX_PAGES} pages for one request",
            listing.MAX_PAGES,
        ),
        ((True, False), "a page gave back the marker it was asked with", 2),
    ],
    indirect=["endless"],
    ids=["empty-pages-that-never-end", "a-page-giving-back-its-marker"],
)
@pytest.mark.parametrize(("path", "params", "operation"), CALLS)
async def test_a_listing_that_makes_no_progress_is_answered_an_error(
    gw: httpx.AsyncClient,
    endless: Endless,
    why: str,
    requests: int,
    path: str,
    params: dict[str, str],
    operation: str,
) -> None:
    sent = gw.post(path, json=params, headers=headers(endless.url))
    answer = read(await asyncio.wait_for(sent, 30), xml=False)
    assert answer.code == -1
    assert answer.msg == f"operation error S3: {operation}, the listing made no progress: {why}"
    assert endless.requests == requests


@pytest.mark.parametrize("endless", [(False, True)], indirect=True)
@pytest.mark.parametrize(("path", "params", "operation"), CALLS)
async def test_a_listing_cut_short_answers_what_it_gathered(
    gw: httpx.AsyncClient, endless: Endless, path: str, params: dict[str, str], operation: str
) -> None:
    sent = gw.post(path, json=params, headers=headers(endless.url), params={"data_format": "xml"})
    answer = read(await asyncio.wait_for(sent, 30), xml=True, many=True)
    assert answer.code == 0, answer.msg
    assert len(answer.data) == listing.MAX_PAGES  # one item per page
    assert endless.requests == listing.MAX_PAGES


async def test_prefixes_come_first_over_every_page(
    gw: httpx.AsyncClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gateway.md: prefixes come first. Each page's came before its own
    objects only, so past one page a prefix stood between objects (found by
    review with 1,100 keys; here pages of two)."""
    monkeypatch.setattr(listing, "PAGE", 2)
    call = Gw(gw, False, backend.headers)
    bucket = unique("order")
    await call.ok("/createBucket", json={"bucket": bucket})
    for key in ("0dir/x", "a1", "a2", "a3", "zdir/x"):
        await call.ok("/uploadObject", data={"bucket": bucket, "key": key}, files={"file": b"x"})
    listed = await call.ok("/listObjects", json={"bucket": bucket, "delimiter": "/"}, many=True)
    assert [(o["key"], o["kind"]) for o in listed.data] == [
        ("0dir/", "PRE"),
        ("zdir/", "PRE"),
        ("a1", "OBJ"),
        ("a2", "OBJ"),
        ("a3", "OBJ"),
    ]
