"""/raw: the bytes of a shared object — types, ranges (one and several),
conditional requests, attachments, and the headers that keep a shared file
from running script in the service's origin."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import os
import random
from datetime import timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest
from share_support import World, sent_to_a_client_that_leaves

from jointcloud.api.common.http import http_date
from jointcloud.api.share.app import create_app

RAW_HEADERS = ("x-content-type-options", "content-security-policy")


def check_safe(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"


async def test_whole_object_with_type_from_extension(world: World) -> None:
    data = os.urandom(300_000)
    info = await world.put("photos/cat.png", data)
    access = await world.public()
    r = await world.client.get(f"/raw/{access}/docs/photos/cat.png")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["etag"] == f'"{info.etag}"'
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert "last-modified" in r.headers
    assert r.headers["content-disposition"].startswith("inline;")
    check_safe(r)


async def test_type_from_metadata_wins(world: World) -> None:
    await world.put("data.bin", b'{"a": 1}', content_type="application/json")
    access = await world.public()
    r = await world.client.get(f"/raw/{access}/docs/data.bin")
    assert r.headers["content-type"] == "application/json"
    await world.put("noext", b"\x00\x01")
    r = await world.client.get(f"/raw/{access}/docs/noext")
    assert r.headers["content-type"] == "application/octet-stream"
    # a stored type that cannot stand in a header: the extension's
    await world.put("odd.txt", b"odd", content_type="text/plain; name=\u00e9t\u00e9\u2603")
    r = await world.client.get(f"/raw/{access}/docs/odd.txt")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"


async def _served_raw(
    world: World, access: str, name: str, page: bytes, ctype: str | None
) -> httpx.Response:
    """Store ``page`` as ``name`` with ``ctype``; its ``/raw`` answer, checked
    to be 200, plain text and safe."""
    await world.put(name, page, content_type=ctype)
    r = await world.client.get(f"/raw/{access}/docs/{name}")
    assert r.status_code == 200, name
    assert r.headers["content-type"] == "text/plain; charset=utf-8", name
    check_safe(r)
    return r


async def test_active_types_are_served_as_plain_text(world: World) -> None:
    page = b"<html><script>alert(document.cookie)</script></html>"
    access = await world.public()
    cases = {
        "evil.html": None,
        "evil.svg": None,
        "evil.xml": None,
        "evil.xhtml": None,
        "evil.js": None,
        "disguised.png": "text/html; charset=utf-8",
        # found by fuzzing: a JavaScript type by WHATWG, styles, wildcards
        "old.js": "text/livescript",
        "style.txt": "text/css",
        "any.bin": "*/*",
        "anytext.bin": "text/*",
    }
    for name, ctype in cases.items():
        r = await _served_raw(world, access, name, page, ctype)
        assert r.content == page
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp


async def test_a_stored_list_of_types_is_served_as_plain_text(world: World) -> None:
    """A header value with a comma is a list, and browsers take its last
    type (Fetch, "extract a MIME type"): Chromium rendered the bytes of
    ``application/pdf; x=1, text/html`` as an HTML page of the share
    origin, while the first type (all the server looked at) was a PDF's
    (found by review, 2026-12-07)."""
    page = b"<h1>Sign in again</h1><form><input name=password></form>"
    access = await world.public()
    cases = {
        "a.pdf": "application/pdf; x=1, text/html",
        "b.png": "image/png; q=0, application/xhtml+xml",
        "c.txt": "text/plain;charset=utf-8,image/svg+xml",
    }
    for name, ctype in cases.items():
        await _served_raw(world, access, name, page, ctype)
        # the page previews such a file as escaped text, not in a frame
        r = await world.client.get(f"/s/{access}/docs/{name}")
        assert r.status_code == 200, name
        assert "<iframe" not in r.text and "<img" not in r.text, name
        assert "&lt;h1&gt;Sign in again" in r.text, name


async def test_download_is_an_attachment_with_rfc6266_names(world: World) -> None:
    await world.put("reports/résumé 2024.pdf", b"%PDF-1.4 ...")
    await world.put("plain.txt", b"hello")
    access = await world.public()
    r = await world.client.get(f"/raw/{access}/docs/reports/r%C3%A9sum%C3%A9%202024.pdf?download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    cd = r.headers["content-disposition"]
    assert cd.startswith('attachment; filename="r_sum_ 2024.pdf"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf" in cd
    r = await world.client.get(f"/raw/{access}/docs/plain.txt?download")
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"
    )


async def test_single_ranges(world: World) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    await world.put("r.bin", data)
    access = await world.public()
    url = f"/raw/{access}/docs/r.bin"
    for header, (start, end) in {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, 10239),
        "bytes=-10": (10230, 10239),
        "bytes=10000-99999": (10000, 10239),
    }.items():
        r = await world.client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start : end + 1]
        assert r.headers["content-range"] == f"bytes {start}-{end}/10240"
        assert r.headers["content-length"] == str(end - start + 1)
        check_safe(r)
    r = await world.client.get(url, headers={"Range": "bytes=20000-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */10240"
    assert "text/html" in r.headers["content-type"]
    assert "No range asked for starts inside this file of 10240 bytes" in r.text
    check_safe(r)
    # other units and malformed headers are ignored: the whole object
    for ignored in ("items=0-1", "bytes=5-2", "bytes=abc"):
        r = await world.client.get(url, headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data


@pytest.mark.pg
async def test_multiple_ranges_are_multipart_byteranges(world: World) -> None:
    data = os.urandom(5000)
    await world.put("m.bin", data)
    access = await world.public()
    r = await world.client.get(
        f"/raw/{access}/docs/m.bin", headers={"Range": "bytes=0-9, 100-199, -5, 9000-"}
    )
    assert r.status_code == 206
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    assert r.headers["content-length"] == str(len(r.content))
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"content-type: " + ctype.encode() + b"\r\n\r\n" + r.content
    )
    parts = list(message.iter_parts())
    # the range past the end selects nothing and is left out
    assert [p["content-range"] for p in parts] == [
        "bytes 0-9/5000",
        "bytes 100-199/5000",
        "bytes 4995-4999/5000",
    ]
    assert [p.get_payload(decode=True) for p in parts] == [
        data[0:10],
        data[100:200],
        data[4995:],
    ]
    assert all(p["content-type"] == "application/octet-stream" for p in parts)


@pytest.mark.pg
async def test_conditional_requests(world: World) -> None:
    info = await world.put("c.txt", b"cached")
    access = await world.public()
    url = f"/raw/{access}/docs/c.txt"
    r = await world.client.get(url)
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    r = await world.client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag
    check_safe(r)
    r = await world.client.get(url, headers={"If-Modified-Since": modified})
    assert r.status_code == 304
    r = await world.client.get(url, headers={"If-None-Match": '"other"'})
    assert r.status_code == 200 and r.content == b"cached"
    r = await world.client.get(url, headers={"If-Match": '"other"'})
    assert r.status_code == 412
    r = await world.client.get(url, headers={"If-Match": f'"{info.etag}"'})
    assert r.status_code == 200
    # If-Range: a stale validator gets the whole object, a current one the range
    r = await world.client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == b"cached"
    r = await world.client.get(url, headers={"Range": "bytes=0-1", "If-Range": etag})
    assert r.status_code == 206 and r.content == b"ca"


async def test_if_range_date_must_be_the_last_modified_exactly(world: World) -> None:
    """RFC 9110 §13.1.5: a date in If-Range holds only if it exactly matches
    Last-Modified (Go's ``http.ServeContent``, behind edge's link sharing,
    compares the seconds for equality). Any later date was taken as current:
    a client holding a copy stamped later (the server's clock stepped back
    between two writes, or a date from another source) got a range of other
    bytes spliced into its copy (found by the time review)."""
    await world.put("r.txt", b"ranged")
    access = await world.public()
    url = f"/raw/{access}/docs/r.txt"
    modified = (await world.client.get(url)).headers["last-modified"]
    r = await world.client.get(url, headers={"Range": "bytes=0-1", "If-Range": modified})
    assert r.status_code == 206 and r.content == b"ra"
    when = parsedate_to_datetime(modified)
    for other in (when + timedelta(hours=1), when - timedelta(seconds=1)):
        r = await world.client.get(
            url, headers={"Range": "bytes=0-1", "If-Range": http_date(other)}
        )
        assert r.status_code == 200 and r.content == b"ranged", other


async def test_dates_past_the_calendar_are_ignored(world: World) -> None:
    """RFC 9110: an invalid date in a precondition is ignored. A year past
    what ``datetime`` holds made the parser raise ``OverflowError``: any
    visitor of a link got a bare 500 without the share headers, and the log
    a traceback at error level (found by review, 2026-12-07)."""
    await world.put("d.txt", b"dated")
    access = await world.public()
    never = "Fri, 31 Dec 99999999999999999 23:59:59 GMT"
    for name in ("If-Modified-Since", "If-Unmodified-Since", "If-Range"):
        r = await world.client.get(
            f"/raw/{access}/docs/d.txt", headers={name: never, "Range": "bytes=0-1"}
        )
        assert r.status_code in (200, 206), name
        check_safe(r)


async def test_head_and_methods(world: World) -> None:
    await world.put("h.txt", b"12345")
    access = await world.public()
    r = await world.client.head(f"/raw/{access}/docs/h.txt")
    assert r.status_code == 200
    assert r.headers["content-length"] == "5"
    assert r.content == b""
    r = await world.client.post(f"/raw/{access}/docs/h.txt")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


async def test_missing_object_and_bucket(world: World) -> None:
    access = await world.public(world.grant)  # the whole project, public
    r = await world.client.get(f"/raw/{access}/docs/nothing.txt")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    check_safe(r)
    r = await world.client.get(f"/raw/{access}/nobucket/a.txt")
    assert r.status_code == 404


async def test_large_object_streams_whole(world: World) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)  # more than one segment
    await world.put("big.bin", data)
    access = await world.public()
    r = await world.client.get(f"/raw/{access}/docs/big.bin")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()


def byteranges(response: object) -> list[tuple[str, bytes]]:
    """The parts of a multipart/byteranges answer: (Content-Range, payload)."""
    ctype = response.headers["content-type"]  # type: ignore[attr-defined]
    body = response.content  # type: ignore[attr-defined]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"content-type: " + ctype.encode() + b"\r\n\r\n" + body
    )
    return [(str(p["content-range"]), p.get_payload(decode=True)) for p in message.iter_parts()]


def count_reads(world: World, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every read of the store the app makes from now on (its GetObject)."""
    reads: list[object] = []
    get = world.ctx.objects.get

    async def counted(principal: object, command: object) -> object:
        reads.append(command)
        return await get(principal, command)  # type: ignore[arg-type]

    monkeypatch.setattr(world.ctx.objects, "get", counted)
    return reads


async def test_a_download_stops_when_its_client_leaves(world: World) -> None:
    """uvicorn drops what is sent to a closed connection without a word:
    the rest of the object was read and decrypted for nobody, so a visitor
    who opened a link and left at once cost the server a whole download
    (found by review, 2026-12-07: 200 MiB read in 0.08 s after the client's
    close)."""
    size = 8 * 1024 * 1024
    await world.put("big.bin", os.urandom(size))
    access = await world.public()
    sent = await sent_to_a_client_that_leaves(create_app(world.ctx), f"/raw/{access}/docs/big.bin")
    assert 0 < sent < size


async def test_overlapping_ranges_are_served_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(300_000)
    await world.put("big.bin", data)
    access = await world.public()
    url = f"/raw/{access}/docs/big.bin"
    reads = count_reads(world, monkeypatch)
    # 64 times the whole object: one range, read once
    r = await world.client.get(url, headers={"Range": "bytes=" + ",".join(["0-"] * 64)})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 0-299999/300000"
    assert r.headers["content-length"] == "300000" and r.content == data
    assert len(reads) == 1
    # overlapping and adjacent ranges merge, in order of offset
    reads.clear()
    r = await world.client.get(
        url, headers={"Range": "bytes=500-999, 0-99, 50-149, 150-199, -100, 900-1000, 0-0"}
    )
    assert r.status_code == 206
    assert r.headers["content-length"] == str(len(r.content))
    assert byteranges(r) == [
        ("bytes 0-199/300000", data[0:200]),
        ("bytes 500-1000/300000", data[500:1001]),
        ("bytes 299900-299999/300000", data[299900:]),
    ]
    assert len(reads) == 3
    # ranges that merge into one answer a plain 206
    r = await world.client.get(url, headers={"Range": "bytes=10-19, 0-9, 15-29"})
    assert r.status_code == 206
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-range"] == "bytes 0-29/300000" and r.content == data[:30]


async def test_more_parts_than_the_bound_get_the_whole_object(world: World) -> None:
    data = os.urandom(10_000)
    await world.put("parts.bin", data)
    access = await world.public()
    url = f"/raw/{access}/docs/parts.bin"
    # 16 parts at most (docs/sharing.md)
    sixteen = ",".join(f"{i * 100}-{i * 100 + 9}" for i in range(16))
    r = await world.client.get(url, headers={"Range": "bytes=" + sixteen})
    assert r.status_code == 206 and len(byteranges(r)) == 16
    r = await world.client.get(url, headers={"Range": f"bytes={sixteen},5000-5009"})
    assert r.status_code == 200 and r.content == data
    # ... counted after merging: 17 ranges that make 16 parts are served
    r = await world.client.get(url, headers={"Range": f"bytes={sixteen},5-15"})
    assert r.status_code == 206 and len(byteranges(r)) == 16
    # more than 64 ranges in the header are not even read
    r = await world.client.get(url, headers={"Range": "bytes=" + ",".join(["0-0"] * 65)})
    assert r.status_code == 200 and r.content == data


async def test_ranges_never_send_more_than_the_object(world: World) -> None:
    size = 2000
    data = os.urandom(size)
    await world.put("any.bin", data)
    access = await world.public()
    url = f"/raw/{access}/docs/any.bin"
    rng = random.Random(20261205)
    for _ in range(40):
        specs = []
        for _ in range(rng.randint(2, 40)):
            a = rng.randrange(size + 50)
            kind = rng.random()
            if kind < 0.2:
                specs.append(f"{a}-")
            elif kind < 0.4:
                specs.append(f"-{rng.randint(1, size + 10)}")
            else:
                specs.append(f"{a}-{a + rng.randrange(300)}")
        header = "bytes=" + ",".join(specs)
        r = await world.client.get(url, headers={"Range": header})
        assert r.status_code in (200, 206, 416), header
        if r.status_code == 200:
            assert r.content == data
        elif r.status_code == 206 and "content-range" in r.headers:
            start, end = map(int, r.headers["content-range"][6:].split("/")[0].split("-"))
            assert r.content == data[start : end + 1], header
        elif r.status_code == 206:
            parts = byteranges(r)
            assert len(parts) > 1, header
            previous_end = -2
            for content_range, payload in parts:
                start, end = map(int, content_range[6:].split("/")[0].split("-"))
                assert start > previous_end + 1, header  # sorted, apart, no overlap
                assert payload == data[start : end + 1], header
                previous_end = end
            assert sum(len(p) for _, p in parts) <= size


async def test_query_flags_choose_bytes_or_page_as_edge_does(world: World) -> None:
    """edge's linksharing reads ``download``, ``wrap`` and ``view`` on both
    URL kinds (``present.go``; ``queryFlagLookup``): ``?download`` gives the
    bytes as an attachment, ``?download=0|false|no|off`` does not, ``?wrap``
    gives the page, ``?view`` or ``?wrap=no`` the bytes inline."""
    await world.put("dir/a.txt", b"hello", content_type="text/plain")
    access = await world.public()
    s, raw = f"/s/{access}/docs/dir/a.txt", f"/raw/{access}/docs/dir/a.txt"

    def is_page(r: object) -> bool:
        return r.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]

    for url, attachment in [
        (f"{s}?download", True),
        (f"{s}?download=1", True),
        (f"{s}?download=yes", True),
        (f"{s}?view", False),
        (f"{s}?wrap=0", False),
        (f"{s}?wrap=NO", False),
        (f"{raw}?download", True),
        (f"{raw}?download=0", False),
        (f"{raw}?download=false", False),
        (f"{raw}?download=Off", False),
        (f"{raw}?download=no&download=1", False),  # the first value counts
        (f"{raw}?wrap=false", False),
        (raw, False),
    ]:
        r = await world.client.get(url)
        assert r.status_code == 200 and r.content == b"hello", url
        assert not is_page(r), url
        kind = "attachment;" if attachment else "inline;"
        assert r.headers["content-disposition"].startswith(kind), url
        check_safe(r)
    for url in (s, f"{s}?download=0", f"{s}?view=off", f"{raw}?wrap", f"{raw}?wrap=1"):
        r = await world.client.get(url)
        assert r.status_code == 200 and is_page(r), url
        assert "a.txt" in r.text and "content-disposition" not in r.headers, url
    # a folder: ?wrap on /raw lists it; /raw alone still names no file
    r = await world.client.get(f"/raw/{access}/docs/dir/?wrap")
    assert r.status_code == 200 and is_page(r) and "a.txt" in r.text
    assert (await world.client.get(f"/raw/{access}/docs/dir/")).status_code == 404


async def test_bytes_through_a_page_url_are_judged_as_raw(world: World) -> None:
    """``/s/...?download`` of a list-only link is refused like ``/raw``."""
    await world.put("a.txt", b"secret")
    access = await world.public(world.restricted(allow=["list"]))
    for url in (f"/s/{access}/docs/a.txt?download", f"/s/{access}/docs/a.txt?view"):
        r = await world.client.get(url)
        assert r.status_code == 403 and b"secret" not in r.content, url


async def test_an_unsatisfiable_range_is_a_page_of_its_own(world: World) -> None:
    """Found by review: the 416 page carried the object's own headers, so a
    gzip-encoded object's page said ``Content-Encoding: gzip`` and browsers
    could not show it (ERR_CONTENT_DECODING_FAILED)."""
    from share_support import chunks

    from jointcloud.core.commands import ObjectAddress, ObjectMeta, PackageRef, PutObject

    address = ObjectAddress(PackageRef.by_name(world.bucket, world.project.bucket_id), "z.gz")
    meta = ObjectMeta(content_encoding="gzip", cache_control="max-age=60")
    await world.ctx.objects.put(world.owner, PutObject(address, chunks(b"x" * 100), meta=meta))
    access = await world.public()
    for url in (f"/raw/{access}/docs/z.gz", f"/raw/{access}/docs/z.gz?download"):
        r = await world.client.get(url, headers={"Range": "bytes=500-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == "bytes */100"
        assert "content-encoding" not in r.headers and "content-disposition" not in r.headers
        assert r.headers.get_list("cache-control") == ["no-store"]
        assert "No range asked for starts inside this file of 100 bytes" in r.text
        check_safe(r)
