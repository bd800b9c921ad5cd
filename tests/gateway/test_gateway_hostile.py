"""Hostile input to the facade (review of 2026-12-05): each case once
stalled the event loop, held an unbounded body, stored an object behind a
failure, spooled a body before any credential check, refused a valid
request, or read a different name than it was given."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gw_support import PASSPHRASE, Answer, Backend, Gw, Jcs, Recorder, read, unique

from jointcloud.api.gateway import upload as up
from jointcloud.keys.caveats import (
    MAX_BASE58,
    APIKey,
    CaveatPath,
    KeyCaveat,
    Permission,
    new_api_key,
)
from jointcloud.keys.grant import new_grant, parse_grant


def offline_key() -> str:
    """A syntactically valid key this server never issued: /createRestrictKey
    works offline, so it takes any."""
    return new_api_key(os.urandom(32)).serialize()


async def test_restrict_key_names_and_length_are_bounded(gw: httpx.AsyncClient) -> None:
    """A 20,000-character bucket name was base58-encoded on the event loop
    (quadratic: 100,000 characters stalled it for minutes), and answered a
    key longer than any reader takes; bad names went into the caveat."""
    call = Gw(gw, False, None)
    key = offline_key()

    async def restrict(buckets: list[str]) -> tuple[int, str, str]:
        body = {"buckets": buckets, "api_key": key, "allow_list": True}
        answer = await call("/createRestrictKey", json=body)
        return answer.code, answer.msg, answer.data or ""

    code, msg, _ = await restrict(["a" * 20_000])
    assert code == -1 and "buckets" in msg and "255 bytes" in msg, msg
    for bad in ("x\x00y", "x/y", "..", "  ", " a"):
        code, msg, _ = await restrict(["ok", bad])
        assert code == -1 and msg.startswith("buckets "), (bad, msg)
    code, msg, _ = await restrict([f"b{i}" for i in range(2000)])
    assert code == -1 and "2000 buckets" in msg and "at most 1000" in msg, msg
    # Each name fits, the key would not: refused before it is encoded.
    code, msg, _ = await restrict([f"bucket-{i:05d}" for i in range(900)])
    assert code == -1 and f"up to {MAX_BASE58} characters" in msg, msg
    # Below the cap: made, and read back.
    code, msg, text = await restrict([f"b{i:03d}" for i in range(500)])
    assert code == 0, msg
    assert len(text) <= MAX_BASE58
    assert APIKey.parse(text).allowed_buckets() == {f"b{i:03d}" for i in range(500)}


async def test_share_url_object_is_bounded(gw: httpx.AsyncClient) -> None:
    """The share link's caveat path: a package name and a key of at most
    1,024 bytes, checked before the key is restricted or encoded."""
    call = Gw(gw, False, None)
    body = {
        "bucket": "b",
        "key": "k",
        "satellite_node_url": "http://127.0.0.1:9",
        "api_key": offline_key(),
        "password": "p",
        "auth_service": "http://127.0.0.1:9",
        "base_url": "https://share.example.net",
    }
    answer = await call("/shareUrl", json={**body, "key": "k" * 20_000})
    assert answer.code == -1 and answer.msg.startswith("key is 20000 bytes long"), answer.msg
    answer = await call("/shareUrl", json={**body, "bucket": "x/y"})
    assert answer.code == -1 and answer.msg.startswith("bucket must be"), answer.msg
    answer = await call("/shareUrl", json={**body, "key": "a\x00b"})
    assert answer.code == -1 and "NUL" in answer.msg, answer.msg


MiB = 1024 * 1024
FORM = {"Content-Type": "multipart/form-data; boundary=B"}


def field(name: str, value: bytes) -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (
        name.encode(),
        value,
    )


async def test_multipart_form_fields_are_bounded_in_all(gw: httpx.AsyncClient) -> None:
    """600 fields of 1 MiB to an endpoint without auth were all held (RSS
    grew by 670 MB): the fields of a form are capped at 4 MiB in all, and
    the form is read no further than that."""
    call = Gw(gw, False, None)
    sent = [0]

    async def many_fields() -> AsyncIterator[bytes]:
        for i in range(600):
            sent[0] += 1
            yield field(f"f{i}", b"x" * (MiB - 100))
        yield b"--B--\r\n"

    answer = await call("/createRestrictKey", content=many_fields(), headers=FORM)
    assert answer.code == -1
    assert answer.msg == (
        "the fields of the multipart form are larger than 4194304 bytes in all "
        "(the file part aside)"
    )
    assert sent[0] <= 6  # stopped at the cap, not at the end of the body

    tiny = b"".join(field("buckets", b"b") for _ in range(10_001)) + b"--B--\r\n"
    answer = await call("/createRestrictKey", content=tiny, headers=FORM)
    assert answer.code == -1 and answer.msg == "the multipart form has more than 10000 parts"

    # Within both caps: read as before.
    body = b"".join(field(f"pad{i}", b"x" * (MiB - 100)) for i in range(3))
    body += field("buckets", b"b1") + field("api_key", offline_key().encode())
    body += field("allow_list", b"true") + b"--B--\r\n"
    answer = await call("/createRestrictKey", content=body, headers=FORM)
    assert answer.code == 0, answer.msg


def upload_form(bucket: str, key: str, data: bytes, tail: bytes) -> bytes:
    head = field("bucket", bucket.encode()) + field("key", key.encode())
    return (
        head
        + b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        + (data + tail)
    )


BAD_TAILS = {
    "a field over 1 MiB": (
        b"\r\n" + field("x", b"y" * (2 * MiB)) + b"--B--\r\n",
        "form part 'x' is larger than 1048576 bytes",
    ),
    "no closing boundary": (
        b"\r\n" + b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nv',
        "multipart body ended before its closing boundary",
    ),
}


async def test_a_bad_form_tail_stores_no_object(
    gw: httpx.AsyncClient, backend: Backend, recorder: Recorder
) -> None:
    """/uploadObject answered failure but had stored the object when the
    form went wrong after the file part: the form is now read to its end
    before PutObject or the completion, and a failed multipart upload is
    aborted."""
    call = Gw(gw, False, backend.headers)
    bucket = unique("tail")
    await call.ok("/createBucket", json={"bucket": bucket})
    await call.ok(
        "/uploadObject", data={"bucket": bucket, "key": "kept"}, files={"file": ("f", b"old")}
    )
    big = bytes(range(256)) * (9 * MiB // 256)  # two parts: a multipart upload
    for what, (tail, message) in BAD_TAILS.items():
        for key, data in (("small", b"PAYLOAD"), ("kept", b"PAYLOAD"), ("big", big)):
            recorder.calls.clear()
            body = upload_form(bucket, key, data, tail)
            answer = await call("/uploadObject", content=body, headers=FORM)
            assert answer.code == -1 and answer.msg == message, (what, key, answer.msg)
            operations = recorder.operations()
            assert "PutObject" not in operations and "CompleteMultipartUpload" not in operations
            if key == "big":
                assert operations[-1] == "AbortMultipartUpload", operations
    listed = await call.ok("/listObjects", json={"bucket": bucket}, many=True)
    assert [o["key"] for o in listed.data] == ["kept"]
    got = await call.raw("/downloadObject", json={"bucket": bucket, "key": "kept"})
    assert got.content == b"old"
    uploads = await call.ok("/listMultipartUploads", json={"bucket": bucket}, many=True)
    assert uploads.data in ([], None)
    # A good tail after the file: stored as before.
    body = upload_form(bucket, "after", b"PAYLOAD", b"\r\n" + field("x", b"v") + b"--B--\r\n")
    await call.ok("/uploadObject", content=body, headers=FORM)
    got = await call.raw("/downloadObject", json={"bucket": bucket, "key": "after"})
    assert got.content == b"PAYLOAD"


def counted(head: bytes, pieces: int, sent: list[int]) -> AsyncIterator[bytes]:
    """A form's ``head`` then ``pieces`` MiB of file, counting what was read."""

    async def body() -> AsyncIterator[bytes]:
        sent[0] += 1
        yield head
        for _ in range(pieces):
            sent[0] += 1
            yield b"z" * MiB
        yield b"\r\n--B--\r\n"

    return body()


def part_head(bucket: str, upload_id: str) -> bytes:
    fields = {"bucket": bucket, "key": "k", "upload_id": upload_id, "part_number": "1"}
    head = b"".join(field(name, value.encode()) for name, value in fields.items())
    return head + b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'


async def write_only(gw: httpx.AsyncClient, jcs: Jcs, bucket: str) -> Gw:
    """The facade with S3 credentials of a key that may only write to
    ``bucket`` (made directly: the satellite's project info takes a key
    that may read)."""
    caveat = KeyCaveat.allowing([Permission.WRITE], paths=[CaveatPath(bucket)])
    key = APIKey.parse(jcs.api_key).restrict(caveat)
    grant = new_grant(jcs.ctx.settings.satellite_url(), key, PASSPHRASE, jcs.project_uuid)
    made = await jcs.ctx.access.register(grant.serialize())
    backend = Backend("jcs", jcs.s3_url, made.access_key_id, made.secret_key)
    return Gw(gw, False, backend.headers)


async def test_uploads_check_credentials_before_reading_the_file(
    gw: httpx.AsyncClient, jcs: Jcs
) -> None:
    """/uploadPart spooled a part of any size before any credential check:
    a cheap GET (ListParts; GetBucketLocation for /uploadObject) now comes
    first, and the file is not read when it says the credentials, bucket
    or upload are no good. A key that may write but not read still uploads."""
    owner = Gw(gw, False, jcs.backend.headers)
    bucket = unique("vouch")
    await owner.ok("/createBucket", json={"bucket": bucket})
    made = await owner.ok("/createMultipartUpload", json={"bucket": bucket, "key": "k"})
    upload_id = made.data["upload_id"]
    bogus = Gw(gw, False, {**jcs.backend.headers, "AccessKeyId": "bogus", "SecretKey": "bogus"})

    sent = [0]
    body = counted(part_head(bucket, upload_id), 64, sent)
    answer = await bogus("/uploadPart", content=body, headers=FORM)
    assert answer.code == -1 and "ListParts" in answer.msg, answer.msg
    assert "InvalidAccessKeyId" in answer.msg and sent[0] == 1
    sent = [0]
    body = counted(part_head(bucket, "no-such-upload"), 64, sent)
    answer = await owner("/uploadPart", content=body, headers=FORM)
    assert answer.code == -1 and "NoSuchUpload" in answer.msg and sent[0] == 1, answer.msg
    sent = [0]
    head = upload_form(bucket, "k", b"", b"")
    answer = await bogus("/uploadObject", content=counted(head, 64, sent), headers=FORM)
    assert answer.code == -1 and "GetBucketLocation" in answer.msg, answer.msg
    assert "InvalidAccessKeyId" in answer.msg and sent[0] == 1

    writer = await write_only(gw, jcs, bucket)
    await writer.ok("/uploadObject", data={"bucket": bucket, "key": "w"}, files={"file": b"w"})
    made = await writer.ok("/createMultipartUpload", json={"bucket": bucket, "key": "m"})
    part = {"bucket": bucket, "key": "m", "upload_id": made.data["upload_id"], "part_number": "1"}
    got = await writer.ok("/uploadPart", data=part, files={"file": b"m"})
    assert got.data["etag"]
    listed = await owner.ok("/listObjects", json={"bucket": bucket}, many=True)
    assert [o["key"] for o in listed.data] == ["w"]


async def test_an_upload_part_is_bounded(
    gw: httpx.AsyncClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part is spooled up to S3's largest part (5 GiB; 1 MiB here) and no
    further; a request declared larger is refused before it is read."""
    monkeypatch.setattr(up, "MAX_PART", MiB, raising=False)  # absent before the fix
    call = Gw(gw, False, backend.headers)
    bucket = unique("cap")
    await call.ok("/createBucket", json={"bucket": bucket})
    made = await call.ok("/createMultipartUpload", json={"bucket": bucket, "key": "k"})
    upload_id = made.data["upload_id"]
    sent = [0]
    answer = await call(
        "/uploadPart", content=counted(part_head(bucket, upload_id), 4, sent), headers=FORM
    )
    assert answer.code == -1 and answer.msg == (
        f"a part holds at most {MiB} bytes (S3's largest part)"
    )
    assert sent[0] <= 3  # read to one byte past the cap, not to the end
    body = part_head(bucket, upload_id) + b"p" * MiB + b"\r\n--B--\r\n"
    answer = await call("/uploadPart", content=body, headers=FORM)
    assert answer.code == 0, answer.msg
    declared = {**FORM, "Content-Length": str(3 * MiB)}
    answer = await call("/uploadPart", content=body, headers=declared)
    assert answer.code == -1 and answer.msg.startswith(f"the request declares {3 * MiB} bytes")


async def test_share_url_valid_later_is_made_now(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    """A share link with a future not_before always failed: the project was
    looked up with the restricted key, which the satellite refuses until
    then. It is looked up with the caller's key now; the link says "not
    valid yet" until not_before (docs/sharing.md)."""
    owner = Gw(gw, False, jcs.backend.headers)
    bucket = unique("later")
    await owner.ok("/createBucket", json={"bucket": bucket})
    await owner.ok("/uploadObject", data={"bucket": bucket, "key": "a.txt"}, files={"file": b"a"})
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    body = {
        "bucket": bucket,
        "key": "a.txt",
        "satellite_node_url": jcs.main_url,
        "api_key": jcs.api_key,
        "password": PASSPHRASE,
        "project_id": jcs.project_uuid,
        "auth_service": jcs.main_url,
        "base_url": jcs.main_url,
        "not_before": int(opens.timestamp() * 1000),
    }
    answer = await Gw(gw, False, None)("/shareUrl", json=body)
    assert answer.code == 0, answer.msg
    access_key_id = answer.data[len(jcs.main_url) + 1 :].split("/")[0]
    resolved = await jcs.ctx.access.resolve(access_key_id)
    assert parse_grant(resolved.grant).api_key.caveats()[-1].not_before == opens
    async with httpx.AsyncClient(base_url=jcs.main_url) as http:
        got = await http.get(f"/raw/{access_key_id}/{bucket}/a.txt")
    assert got.status_code == 403 and "not valid yet" in got.text


async def test_parameters_that_are_not_utf8_are_refused(
    gw: httpx.AsyncClient, backend: Backend
) -> None:
    """``key=%FF`` became U+FFFD and read the object of that name; so did
    ``%FF`` in a urlencoded body and a multipart field's raw ``\\xff``. Each
    source now refuses text that is not UTF-8, naming the parameter."""
    call = Gw(gw, False, backend.headers)
    bucket = unique("utf8")
    await call.ok("/createBucket", json={"bucket": bucket})
    for key in ("\ufffd", "ключ"):
        form = {"bucket": bucket, "key": key}
        await call.ok("/uploadObject", data=form, files={"file": ("f", b"victim")})
    message = "invalid parameter key: is not valid UTF-8"

    async def get(url: str, *, xml: bool = False) -> Answer:
        # httpx replaces a URL's query when given params (as Gw does)
        return read(await gw.get(url, headers=backend.headers), xml=xml)

    query = f"/headObject?bucket={bucket}&key=%FF"
    answer = await get(query)
    assert answer.code == -1 and answer.msg == message, answer.msg
    answer = await get("/headObject?%FF=x")
    assert answer.code == -1 and answer.msg == "a parameter name is not valid UTF-8"
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"bucket=%s&key=%%FF" % bucket.encode(), b"bucket=%s&key=\xff" % bucket.encode()):
        answer = await call("/headObject", content=body, headers=urlencoded)
        assert answer.code == -1 and answer.msg == message, (body, answer.msg)
    body = field("bucket", bucket.encode()) + field("key", b"\xff") + b"--B--\r\n"
    answer = await call("/headObject", content=body, headers=FORM)
    assert answer.code == -1 and answer.msg == message, answer.msg
    # The answer's format is still read from the query string.
    answer = await get(query + "&data_format=xml", xml=True)
    assert answer.code == -1 and answer.msg == message
    # UTF-8, in each source, reads as before.
    head = await get(f"/headObject?bucket={bucket}&key=%D0%BA%D0%BB%D1%8E%D1%87")
    assert head.code == 0 and head.data["content_length"] == 6, head.msg
    body = "bucket={}&key={}".format(bucket, "%D0%BA%D0%BB%D1%8E%D1%87").encode()
    await call.ok("/headObject", content=body, headers=urlencoded)
    body = field("bucket", bucket.encode()) + field("key", "ключ".encode()) + b"--B--\r\n"
    await call.ok("/headObject", content=body, headers=FORM)


async def test_json_numbers_and_constants_are_not_names(
    gw: httpx.AsyncClient, backend: Backend
) -> None:
    """Python's decoder takes NaN and Infinity, which JSON has not, and a
    number became a name by ``str()``: ``{"bucket": 1e400}`` made bucket
    ``inf``, ``1e2`` key ``100.0``, a tag value ``1e400`` "inf". Fractions
    and constants are refused; a whole number is still its digits."""
    call = Gw(gw, False, backend.headers)
    json_body = {"Content-Type": "application/json"}
    for raw, message in (
        (b'{"bucket": NaN}', "the request body is not valid JSON: NaN is not a JSON value"),
        (
            b'{"bucket": -Infinity}',
            "the request body is not valid JSON: -Infinity is not a JSON value",
        ),
        (b'{"bucket": 1e400}', "invalid parameter bucket: must be a string"),
        (b'{"bucket": 1e2}', "invalid parameter bucket: must be a string"),
    ):
        answer = await call("/createBucket", content=raw, headers=json_body)
        assert answer.code == -1 and answer.msg == message, (raw, answer.msg)
    names = [b["bucket"] for b in (await call.ok("/listBuckets", many=True)).data]
    assert not {"inf", "nan", "100.0", "-inf"} & set(names)
    bucket = unique("num")
    await call.ok("/createBucket", json={"bucket": bucket})
    await call.ok("/uploadObject", data={"bucket": bucket, "key": "7"}, files={"file": b"x"})
    head = await call("/headObject", json={"bucket": bucket, "key": 7})
    assert head.code == 0 and head.data["content_length"] == 1, head.msg
    tags = {"bucket": bucket, "key": "7", "tags": [{"key": "n", "value": 1e300}]}
    answer = await call("/putObjectTagging", json=tags)
    assert answer.code == -1 and answer.msg == "invalid parameter tags: tags/value must be a string"


async def test_a_form_field_replaces_the_query_strings(
    gw: httpx.AsyncClient, backend: Backend
) -> None:
    """A value in the body replaces one in the query string (gateway.md):
    JSON and urlencoded bodies did, a multipart form's fields were added
    after the query's, so the query's won and the object went to the
    bucket the query named (found by review)."""
    call = Gw(gw, False, backend.headers)
    in_query, in_form = unique("q"), unique("f")
    for bucket in (in_query, in_form):
        await call.ok("/createBucket", json={"bucket": bucket})
    await call.ok(
        "/uploadObject",
        params={"bucket": in_query, "key": "k1"},
        data={"bucket": in_form, "key": "k1"},
        files={"file": ("f", b"body")},
    )
    got = await call.raw("/downloadObject", json={"bucket": in_form, "key": "k1"})
    assert got.content == b"body"
    listed = await call.ok("/listObjects", json={"bucket": in_query}, many=True)
    assert listed.data in ([], None)


async def test_bodies_that_are_not_json_objects_say_what_they_are(
    gw: httpx.AsyncClient, backend: Backend
) -> None:
    """Found by review: a 5,000-digit number got only "not valid JSON", and a
    JSON array sent without a Content-Type was read as a form that lacked
    every field ("missing required parameter ...")."""
    call = Gw(gw, False, backend.headers)
    answer = await call(
        "/createBucket",
        content=b'{"bucket": ' + b"1" * 5000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert (
        answer.msg == "the request body is not valid JSON here: a number has more than 4300 digits"
    )
    answer = await call("/createBucket", content=b'[{"bucket": "x"}]')
    assert answer.code == -1 and answer.msg == "the request body must be a JSON object", answer.msg
