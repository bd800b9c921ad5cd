"""CORS configuration and preflight, CORS headers on ordinary responses,
and browser-based POST uploads (boto3's generate_presigned_post)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from s3_support import S3, code_of

from jointcloud.api.s3.app import create_app
from jointcloud.api.s3.ops_cors import MAX_PREFLIGHT_HEADERS
from jointcloud.core import models
from jointcloud.keys.caveats import CaveatPath, KeyCaveat
from support.asgi import sent_then_gone

RULES: dict[str, Any] = {
    "CORSRules": [
        {
            "ID": "app",
            "AllowedOrigins": ["https://app.example.com", "https://*.example.org"],
            "AllowedMethods": ["GET", "PUT", "POST"],
            "AllowedHeaders": ["x-amz-*", "Content-Type"],
            "ExposeHeaders": ["ETag", "x-amz-request-id"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
    ]
}


def _code(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _options(url: str, **headers: str) -> requests.Response:
    return requests.options(url, headers=headers, timeout=10)


async def test_cors_configuration(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="web")
        with pytest.raises(ClientError) as e:
            c.get_bucket_cors(Bucket="web")
        assert _code(e) == ("NoSuchCORSConfiguration", 404)
        c.put_bucket_cors(Bucket="web", CORSConfiguration=RULES)
        assert c.get_bucket_cors(Bucket="web")["CORSRules"] == RULES["CORSRules"]
        for bad in (
            {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
            {"AllowedOrigins": ["https://*.*.example.com"], "AllowedMethods": ["GET"]},
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["*a*"]},
        ):
            with pytest.raises(ClientError) as e:
                c.put_bucket_cors(Bucket="web", CORSConfiguration={"CORSRules": [bad]})
            assert _code(e) == ("InvalidRequest", 400)
        too_many = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101}
        with pytest.raises(ClientError) as e:
            c.put_bucket_cors(Bucket="web", CORSConfiguration=too_many)
        assert _code(e) == ("InvalidRequest", 400)
        with pytest.raises(ClientError) as e:
            c.put_bucket_cors(Bucket="web", CORSConfiguration={"CORSRules": []})
        assert _code(e) == ("MalformedXML", 400)
        with pytest.raises(ClientError) as e:
            c.put_bucket_cors(Bucket="nobucket", CORSConfiguration=RULES)
        assert _code(e) == ("NoSuchBucket", 404)
        assert c.get_bucket_cors(Bucket="web")["CORSRules"] == RULES["CORSRules"]  # unchanged
        deleted = c.delete_bucket_cors(Bucket="web")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ClientError) as e:
            c.get_bucket_cors(Bucket="web")
        assert _code(e) == ("NoSuchCORSConfiguration", 404)

    await asyncio.to_thread(work)


async def test_preflight_and_response_headers(s3: S3) -> None:
    c = s3.client()
    url = f"{s3.endpoint}/site/index.html"

    def work() -> None:
        c.create_bucket(Bucket="site")
        c.put_object(Bucket="site", Key="index.html", Body=b"<p>hi</p>")
        not_enabled = _options(
            url, Origin="https://app.example.com", **{"Access-Control-Request-Method": "GET"}
        )
        assert not_enabled.status_code == 403
        assert b"<Code>AccessForbidden</Code>" in not_enabled.content
        c.put_bucket_cors(Bucket="site", CORSConfiguration=RULES)

        ok = _options(
            url,
            Origin="https://app.example.com",
            **{
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "Content-Type, X-Amz-Date",
            },
        )
        assert ok.status_code == 200, ok.content
        h = ok.headers
        assert h["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert h["Access-Control-Allow-Methods"] == "GET, PUT, POST"
        assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
        assert h["Access-Control-Max-Age"] == "600"
        assert h["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
        assert "Origin" in h["Vary"]

        wild = _options(
            f"{s3.endpoint}/site",
            Origin="https://www.example.org",
            **{"Access-Control-Request-Method": "GET"},
        )
        assert wild.status_code == 200
        anyone = _options(
            url, Origin="http://elsewhere.test", **{"Access-Control-Request-Method": "HEAD"}
        )
        assert anyone.headers["Access-Control-Allow-Origin"] == "*"

        for headers in (
            {"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
            {"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"},
            {
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        ):
            refused = _options(url, **headers)
            assert refused.status_code == 403
            assert b"<Code>AccessForbidden</Code>" in refused.content
            assert b"This CORS request is not allowed" in refused.content
            assert "Access-Control-Allow-Origin" not in refused.headers
        assert _options(url, **{"Access-Control-Request-Method": "GET"}).status_code == 400
        assert _options(url, Origin="https://app.example.com").status_code == 400
        other = _options(
            f"{s3.endpoint}/nobucket/x",
            Origin="https://app.example.com",
            **{"Access-Control-Request-Method": "GET"},
        )
        assert other.status_code == 403

        # Ordinary (signed) requests with an Origin get the matching rule's headers.
        presigned = c.generate_presigned_url(
            "get_object", Params={"Bucket": "site", "Key": "index.html"}
        )
        got = requests.get(presigned, headers={"Origin": "https://app.example.com"}, timeout=10)
        assert got.status_code == 200 and got.content == b"<p>hi</p>"
        assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert got.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
        missing = c.generate_presigned_url("get_object", Params={"Bucket": "site", "Key": "no"})
        gone = requests.get(missing, headers={"Origin": "https://app.example.com"}, timeout=10)
        assert gone.status_code == 404
        assert gone.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        plain = requests.get(presigned, headers={"Origin": "https://evil.test"}, timeout=10)
        assert plain.status_code == 200 and "Access-Control-Allow-Origin" not in plain.headers
        assert "Access-Control-Allow-Origin" not in requests.get(presigned, timeout=10).headers

    await asyncio.to_thread(work)


async def test_preflight_header_names_are_bounded(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preflight's Access-Control-Request-Headers was matched name by name
    against every allowed header of every rule: 30,000 names (60 KB, within
    the head's limit) against a rule listing 1,800 took 5.5 s of the event
    loop, for anyone, without credentials (found by review). Names count
    once, plain names are looked up, and more than MAX_PREFLIGHT_HEADERS
    distinct names are refused."""
    c = s3.client()
    url = f"{s3.endpoint}/many/x"
    tried: list[str] = []
    match = models._wildcard_match

    def counted(pattern: str, value: str) -> bool:
        tried.append(pattern)
        return match(pattern, value)

    monkeypatch.setattr(models, "_wildcard_match", counted)
    allowed = [f"h{i}" for i in range(1000)] + ["x-amz-*"]
    rules = {
        "CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["PUT"], "AllowedHeaders": allowed}
        ]
    }

    def preflight(names: list[str]) -> requests.Response:
        return _options(
            url,
            Origin="https://app.example.com",
            **{
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": ",".join(names),
            },
        )

    def work() -> None:
        c.create_bucket(Bucket="many")
        c.put_bucket_cors(Bucket="many", CORSConfiguration=rules)
        same = preflight(["H999", "h999"] * 1000)
        assert same.status_code == 200, same.content
        # Header patterns tried (the origin's "*" aside): 2,000,000 before.
        assert [p for p in tried if p != "*"] == []
        assert same.headers["Access-Control-Allow-Headers"] == "h999"
        tried.clear()
        most = [f"x-amz-meta-{i}" for i in range(MAX_PREFLIGHT_HEADERS)]
        assert preflight(most).status_code == 200
        assert [p for p in tried if p != "*"] == ["x-amz-*"] * MAX_PREFLIGHT_HEADERS
        refused = preflight([*most, "h1"])
        assert refused.status_code == 400
        assert b"<Code>BadRequest</Code>" in refused.content
        assert f"at most {MAX_PREFLIGHT_HEADERS}".encode() in refused.content
        assert "Access-Control-Allow-Origin" not in refused.headers
        assert preflight(["h1", "authorization"]).status_code == 403

    await asyncio.to_thread(work)


def _post(post: dict[str, Any], fields: dict[str, str], data: bytes, name: str = "f.txt") -> Any:
    form = {**post["fields"], **fields}
    return requests.post(post["url"], data=form, files={"file": (name, data)}, timeout=30)


async def test_post_object(s3: S3) -> None:
    c = s3.client()
    data = os.urandom(300 * 1024 + 7)

    def work() -> None:
        c.create_bucket(Bucket="upl")
        c.put_bucket_cors(Bucket="upl", CORSConfiguration=RULES)
        # SigV4 fields here (boto3's default for a form is SigV2: the other forms).
        post = s3.client(signature_version="s3v4").generate_presigned_post(
            "upl",
            "uploads/${filename}",
            Fields={"Content-Type": "text/plain", "x-amz-meta-who": "me"},
            Conditions=[
                ["starts-with", "$key", "uploads/"],
                {"Content-Type": "text/plain"},
                {"x-amz-meta-who": "me"},
                ["content-length-range", 1, 1024 * 1024],
            ],
            ExpiresIn=300,
        )
        sent = requests.post(
            post["url"],
            data=post["fields"],
            files={"file": ("photo.bin", data)},
            headers={"Origin": "https://app.example.com"},
            timeout=30,
        )
        assert sent.status_code == 204, sent.content
        assert sent.headers["ETag"].strip('"')
        assert sent.headers["Location"].endswith("/upl/uploads/photo.bin")
        assert sent.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        got = c.get_object(Bucket="upl", Key="uploads/photo.bin")
        assert got["Body"].read() == data
        assert got["ContentType"] == "text/plain" and got["Metadata"] == {"who": "me"}

        # Too large and too small: refused while streaming, nothing stored.
        small = c.generate_presigned_post(
            "upl", "uploads/limited", Conditions=[["content-length-range", 10, 1000]]
        )
        big = _post(small, {}, b"x" * 1001)
        assert big.status_code == 400 and b"<Code>EntityTooLarge</Code>" in big.content
        tiny = _post(small, {}, b"x" * 9)
        assert tiny.status_code == 400 and b"<Code>EntityTooSmall</Code>" in tiny.content
        with pytest.raises(ClientError) as e:
            c.head_object(Bucket="upl", Key="uploads/limited")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert _post(small, {}, b"x" * 10).status_code == 204

        # success_action_status 201 and success_action_redirect.
        created = c.generate_presigned_post(
            "upl", "k201", Fields={"success_action_status": "201"},
            Conditions=[{"success_action_status": "201"}],
        )  # fmt: skip
        answer = _post(created, {}, b"abc")
        assert answer.status_code == 201
        assert b"<PostResponse>" in answer.content and b"<Key>k201</Key>" in answer.content
        back = "https://app.example.com/done?x=1"
        redirected = c.generate_presigned_post(
            "upl", "kredir", Fields={"success_action_redirect": back},
            Conditions=[{"success_action_redirect": back}],
        )  # fmt: skip
        moved = requests.post(
            redirected["url"],
            data=redirected["fields"],
            files={"file": ("a", b"abc")},
            allow_redirects=False,
            timeout=30,
        )
        assert moved.status_code == 303
        assert moved.headers["Location"].startswith(back + "&bucket=upl&key=kredir&etag=")

        # Policy and signature failures.
        tampered = _post(post, {"x-amz-meta-who": "you"}, b"abc")
        assert tampered.status_code == 403, tampered.content
        assert b"<Code>AccessDenied</Code>" in tampered.content
        extra = _post(post, {"x-amz-meta-extra": "1"}, b"abc")
        assert extra.status_code == 403 and b"Extra input fields" in extra.content
        outside = _post(post, {"key": "elsewhere/a"}, b"abc")
        assert outside.status_code == 403
        assert "x-amz-signature" in post["fields"]
        forged = _post(post, {"x-amz-signature": "0" * 64}, b"abc")
        assert forged.status_code == 403, forged.content
        assert b"<Code>SignatureDoesNotMatch</Code>" in forged.content
        assert "signature" in small["fields"]
        forged = _post(small, {"signature": "AAAA" + small["fields"]["signature"][4:]}, b"a" * 10)
        assert forged.status_code == 403, forged.content
        assert b"<Code>SignatureDoesNotMatch</Code>" in forged.content
        no_file = requests.post(
            post["url"], data=post["fields"], files={"x-ignore-pad": (None, "1")}, timeout=30
        )
        assert no_file.status_code == 400 and b"<Code>InvalidArgument</Code>" in no_file.content
        not_form = requests.post(post["url"], data=b"raw", timeout=30)
        assert not_form.status_code == 412 and b"multipart/form-data" in not_form.content
        public = c.generate_presigned_post(
            "upl", "pub", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
        )
        refused = _post(public, {}, b"abc")
        assert refused.status_code == 400, refused.content
        assert b"<Code>AccessControlListNotSupported</Code>" in refused.content
        private = c.generate_presigned_post(
            "upl", "priv", Fields={"acl": "private"}, Conditions=[{"acl": "private"}]
        )
        assert _post(private, {}, b"abc").status_code == 204

    await asyncio.to_thread(work)


async def test_post_object_is_bound_by_the_grant(s3: S3) -> None:
    c = s3.client()
    await asyncio.to_thread(c.create_bucket, Bucket="shared")
    key_id, secret = await s3.credentials(KeyCaveat(paths=(CaveatPath("shared", "ok/"),)))
    s3.access_key_id, s3.secret_key = key_id, secret
    limited = s3.client()

    def work() -> None:
        inside = limited.generate_presigned_post("shared", "ok/a")
        assert _post(inside, {}, b"abc").status_code == 204
        outside = limited.generate_presigned_post("shared", "no/a")
        refused = _post(outside, {}, b"abc")
        assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
        assert c.get_object(Bucket="shared", Key="ok/a")["Body"].read() == b"abc"

    await asyncio.to_thread(work)


async def test_bucket_wide_settings_need_a_key_that_reaches_the_whole_bucket(s3: S3) -> None:
    c = s3.client()
    rules = {"CORSRules": [{"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET"]}]}

    def prepare() -> None:
        c.create_bucket(Bucket="wide")
        c.put_bucket_cors(Bucket="wide", CORSConfiguration=rules)

    await asyncio.to_thread(prepare)
    s3.access_key_id, s3.secret_key = await s3.credentials(
        KeyCaveat(paths=(CaveatPath("wide", "mine/"), CaveatPath("fresh", "mine/")))
    )
    limited = s3.client()
    evil = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "DELETE"]}]}

    def work() -> None:
        attempts = {
            "PutBucketCors": lambda: limited.put_bucket_cors(Bucket="wide", CORSConfiguration=evil),
            "DeleteBucketCors": lambda: limited.delete_bucket_cors(Bucket="wide"),
            "PutBucketAcl": lambda: limited.put_bucket_acl(Bucket="wide", ACL="private"),
            "PutBucketEncryption": lambda: limited.put_bucket_encryption(
                Bucket="wide",
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            ),
            "DeleteBucketEncryption": lambda: limited.delete_bucket_encryption(Bucket="wide"),
            # making a bucket is all of it, as on the published satellite
            "CreateBucket": lambda: limited.create_bucket(Bucket="fresh"),
        }
        for name, attempt in attempts.items():
            code, status, message = code_of(attempt)
            assert (code, status) == ("AccessDenied", 403), name
            assert "this acts on the whole package" in message, (name, message)
        # the owner's rules stand, and the key still writes where it reaches
        assert c.get_bucket_cors(Bucket="wide")["CORSRules"][0]["AllowedOrigins"] == [
            "https://app.example"
        ]
        limited.put_object(Bucket="wide", Key="mine/a", Body=b"a")
        assert code_of(lambda: c.head_bucket(Bucket="fresh"))[1] == 404
        # the bucket that exists answers as made, as rclone needs before it uploads
        limited.create_bucket(Bucket="wide")

    await asyncio.to_thread(work)


async def test_a_post_whose_body_never_ends_stores_nothing(s3: S3) -> None:
    """Found by review: the object was committed when its file part ended,
    though the rest of the body (a field after the file, the closing
    boundary) never came and the client went away."""
    c = s3.client()
    await asyncio.to_thread(c.create_bucket, Bucket="cut")
    post = c.generate_presigned_post("cut", "obj.txt")
    boundary = "xYzB0undary"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in post["fields"].items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="o.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode() + b"hello world\r\n"
    tail = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\nlater\r\n'.encode()
    tail += f"--{boundary}--\r\n".encode()
    headers = [
        (b"host", s3.endpoint.removeprefix("http://").encode()),
        (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
        (b"content-length", str(len(head) + len(tail)).encode()),
    ]
    # the file part has ended; the rest never comes
    sent = await sent_then_gone(create_app(s3.ctx), "POST", "/cut", headers, head + tail[:20])
    assert not any(m.get("status") in (200, 201, 204, 303) for m in sent), sent
    _, status, _ = await asyncio.to_thread(
        code_of, lambda: c.head_object(Bucket="cut", Key="obj.txt")
    )
    assert status == 404
    # The whole body stores it.
    whole = await asyncio.to_thread(
        requests.post,
        post["url"],
        data=head + tail,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert whole.status_code == 204, whole.text
