"""Non-ASCII and hostile text in metadata and header overrides: user
metadata goes back as AWS returns it (RFC 2047 encoded-words), other chosen
headers as the UTF-8 they came in as, and no value (from a header, a POST
form field or a query string) can make a response fail or split its
headers."""

from __future__ import annotations

import asyncio
from email.header import decode_header, make_header
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from s3_support import S3


def _decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


def _utf8(raw_header: str) -> str:
    """A header as requests read it (ISO-8859-1), as the UTF-8 it was."""
    return raw_header.encode("latin-1").decode("utf-8")


async def test_user_metadata_is_returned_as_rfc2047(s3: S3) -> None:
    c = s3.client()
    sent = {
        "raw": "Hello World\xe9",  # botocore sends it as raw UTF-8 bytes
        "words": "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=",
        "q": "=?utf-8?q?caf=C3=A9?=",
        "plain": "just ascii",
    }

    def set_headers(params: dict[str, Any], **_: Any) -> None:
        for name, value in sent.items():
            params["headers"][f"x-amz-meta-{name}"] = value

    def work() -> None:
        c.create_bucket(Bucket="metatext")
        c.meta.events.register("before-call.s3.PutObject", set_headers)
        c.put_object(Bucket="metatext", Key="k", Body=b"x")
        c.meta.events.unregister("before-call.s3.PutObject", set_headers)
        got = c.head_object(Bucket="metatext", Key="k")["Metadata"]
        assert got == {
            "raw": "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=",
            "words": "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=",
            "q": "=?UTF-8?B?Y2Fmw6k=?=",
            "plain": "just ascii",
        }
        assert _decoded(got["q"]) == "café"
        # a copy that keeps the metadata keeps the text, not the encoding
        c.copy_object(Bucket="metatext", Key="k2", CopySource="metatext/k")
        assert c.get_object(Bucket="metatext", Key="k2")["Metadata"] == got

    await asyncio.to_thread(work)


async def test_post_form_text_cannot_break_a_response(s3: S3) -> None:
    """Form fields are any text: non-Latin-1 text once made GetObject fail
    (500), and a redirect URL with a line break dropped the connection."""
    c = s3.client()
    fields = {
        "x-amz-meta-city": "東京 é",
        "Content-Disposition": 'attachment; filename="東京.txt"',
        "success_action_redirect": "http://example.test/done/東京?a=1\r\nX-Injected: 1",
    }

    def work() -> None:
        c.create_bucket(Bucket="postext")
        post = c.generate_presigned_post(
            "postext",
            "up/x",
            Fields=fields,
            Conditions=[{name: value} for name, value in fields.items()],
        )
        sent = requests.post(
            post["url"],
            data=post["fields"],
            files={"file": b"x"},
            allow_redirects=False,
            timeout=30,
        )
        assert sent.status_code == 303, sent.text
        location = sent.headers["location"]
        assert location.startswith(
            "http://example.test/done/%E6%9D%B1%E4%BA%AC?a=1%0D%0AX-Injected:%201&bucket=postext"
        ), location
        assert "x-injected" not in sent.headers

        url = c.generate_presigned_url("get_object", Params={"Bucket": "postext", "Key": "up/x"})
        got = requests.get(url, timeout=30)
        assert got.status_code == 200 and got.content == b"x"
        assert "x-injected" not in got.headers
        assert _decoded(got.headers["x-amz-meta-city"]) == "東京 é"

        # user metadata holding a control character is refused at upload
        bad = c.generate_presigned_post(
            "postext", "up/y", Fields={"x-amz-meta-lines": "one\r\ntwo"},
            Conditions=[{"x-amz-meta-lines": "one\r\ntwo"}],
        )  # fmt: skip
        sent = requests.post(bad["url"], data=bad["fields"], files={"file": b"y"}, timeout=30)
        assert sent.status_code == 400 and "user metadata 'lines'" in sent.text, sent.text
        assert _utf8(got.headers["content-disposition"]) == 'attachment; filename="東京.txt"'

    await asyncio.to_thread(work)


async def test_response_overrides_are_utf8_and_refuse_controls(s3: S3) -> None:
    c = s3.client()

    def url(disposition: str) -> str:
        return str(
            c.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": "overtext",
                    "Key": "k",
                    "ResponseContentDisposition": disposition,
                },
            )
        )

    def work() -> None:
        c.create_bucket(Bucket="overtext")
        c.put_object(Bucket="overtext", Key="k", Body=b"x")
        got = requests.get(url('attachment; filename="東京.txt"'), timeout=30)
        assert got.status_code == 200, got.text
        assert _utf8(got.headers["content-disposition"]) == 'attachment; filename="東京.txt"'

        refused = requests.get(url("a\r\nX-Injected: 1"), timeout=30)
        assert refused.status_code == 400 and "x-injected" not in refused.headers
        assert "<Code>InvalidArgument</Code>" in refused.text
        assert "response-content-disposition holds a control character" in refused.text
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="overtext", Key="k", ResponseContentType="text/plain\nX: y")
        assert e.value.response["Error"]["Code"] == "InvalidArgument"

    await asyncio.to_thread(work)
