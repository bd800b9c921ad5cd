"""Content-Language and x-amz-website-redirect-location, kept with an object
as S3 keeps them: on PutObject, multipart uploads, POST uploads and copies,
returned by HeadObject and GetObject. The AWS CLI's own integration suite
found both dropped (they were accepted and lost)."""

from __future__ import annotations

import asyncio

import httpx
from s3_support import S3, code_of


async def test_put_head_get_keep_both(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="cfs")
        c.put_object(
            Bucket="cfs",
            Key="page.html",
            Body=b"<p>bonjour</p>",
            ContentLanguage="fr-CA, en",
            WebsiteRedirectLocation="/other/page.html",
        )
        head = c.head_object(Bucket="cfs", Key="page.html")
        assert head["ContentLanguage"] == "fr-CA, en"
        assert head["WebsiteRedirectLocation"] == "/other/page.html"
        got = c.get_object(Bucket="cfs", Key="page.html")
        assert got["ContentLanguage"] == "fr-CA, en"
        assert got["WebsiteRedirectLocation"] == "/other/page.html"
        assert got["Body"].read() == b"<p>bonjour</p>"
        # Neither is invented for an object that did not set it.
        c.put_object(Bucket="cfs", Key="plain", Body=b"x")
        plain = c.head_object(Bucket="cfs", Key="plain")
        assert "ContentLanguage" not in plain and "WebsiteRedirectLocation" not in plain
        # The override still wins on a read, as before.
        over = c.get_object(Bucket="cfs", Key="page.html", ResponseContentLanguage="de")
        assert over["ContentLanguage"] == "de"

    await asyncio.to_thread(work)


async def test_redirect_must_be_a_path_or_an_http_url(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="rdr")
        for good in ("/a", "http://example.com/", "https://example.com/x?y=1"):
            c.put_object(Bucket="rdr", Key="k", Body=b"x", WebsiteRedirectLocation=good)
            assert c.head_object(Bucket="rdr", Key="k")["WebsiteRedirectLocation"] == good
        for bad in ("noslash", "ftp://example.com/", "example.com/a"):
            code, status, message = code_of(
                lambda bad=bad: c.put_object(
                    Bucket="rdr", Key="k2", Body=b"x", WebsiteRedirectLocation=bad
                )
            )
            assert (code, status) == ("InvalidRedirectLocation", 400)
            assert "prefix of 'http://' or 'https://' or '/'" in message
        # Nothing was stored by the refused writes.
        assert code_of(lambda: c.head_object(Bucket="rdr", Key="k2"))[1] == 404
        code, status, message = code_of(
            lambda: c.put_object(
                Bucket="rdr", Key="k3", Body=b"x", WebsiteRedirectLocation="/" + "a" * 2048
            )
        )
        assert (code, status) == ("InvalidArgument", 400) and "2048" in message

    await asyncio.to_thread(work)


async def test_multipart_upload_keeps_both(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        up = c.create_multipart_upload(
            Bucket="mpu", Key="big", ContentLanguage="ja", WebsiteRedirectLocation="/small"
        )
        part = c.upload_part(
            Bucket="mpu", Key="big", UploadId=up["UploadId"], PartNumber=1, Body=b"z" * 1024
        )
        c.complete_multipart_upload(
            Bucket="mpu",
            Key="big",
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        head = c.head_object(Bucket="mpu", Key="big")
        assert head["ContentLanguage"] == "ja"
        assert head["WebsiteRedirectLocation"] == "/small"

    await asyncio.to_thread(work)


async def test_copy_keeps_language_but_not_the_redirect(s3: S3) -> None:
    """AWS: the redirect "is unique to each object and is not copied when
    using the x-amz-metadata-directive header"; a copy carries only the one
    its request gives. Content-Language follows the metadata directive."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="cpy")
        c.put_object(
            Bucket="cpy", Key="src", Body=b"s", ContentLanguage="en", WebsiteRedirectLocation="/r"
        )
        source = {"Bucket": "cpy", "Key": "src"}
        c.copy_object(Bucket="cpy", Key="copied", CopySource=source)
        copied = c.head_object(Bucket="cpy", Key="copied")
        assert copied["ContentLanguage"] == "en"
        assert "WebsiteRedirectLocation" not in copied
        c.copy_object(Bucket="cpy", Key="given", CopySource=source, WebsiteRedirectLocation="/n")
        assert c.head_object(Bucket="cpy", Key="given")["WebsiteRedirectLocation"] == "/n"
        c.copy_object(
            Bucket="cpy",
            Key="replaced",
            CopySource=source,
            MetadataDirective="REPLACE",
            ContentLanguage="nl",
        )
        replaced = c.head_object(Bucket="cpy", Key="replaced")
        assert replaced["ContentLanguage"] == "nl" and "WebsiteRedirectLocation" not in replaced
        # Onto itself: a new redirect alone is a change AWS accepts...
        c.copy_object(Bucket="cpy", Key="src", CopySource=source, WebsiteRedirectLocation="/s")
        itself = c.head_object(Bucket="cpy", Key="src")
        assert itself["WebsiteRedirectLocation"] == "/s" and itself["ContentLanguage"] == "en"
        # Metadata a COPY directive ignores is not checked either (AWS).
        c.copy_object(Bucket="cpy", Key="ignored", CopySource=source, Metadata={"big": "m" * 3000})
        assert c.head_object(Bucket="cpy", Key="ignored")["ContentLanguage"] == "en"
        # ...and with nothing changed it is still refused.
        code, status, _ = code_of(lambda: c.copy_object(Bucket="cpy", Key="src", CopySource=source))
        assert (code, status) == ("InvalidRequest", 400)

    await asyncio.to_thread(work)


async def test_post_upload_keeps_the_redirect(s3: S3) -> None:
    c = s3.client()

    def work() -> tuple[int, int]:
        c.create_bucket(Bucket="pst")
        fields = {"x-amz-website-redirect-location": "https://example.com/"}
        post = c.generate_presigned_post(
            "pst",
            "posted",
            Fields=dict(fields),
            Conditions=[{"x-amz-website-redirect-location": "https://example.com/"}],
        )
        ok = httpx.post(post["url"], data=post["fields"], files={"file": b"p"})
        bad = c.generate_presigned_post(
            "pst",
            "refused",
            Fields={"x-amz-website-redirect-location": "elsewhere"},
            Conditions=[{"x-amz-website-redirect-location": "elsewhere"}],
        )
        refused = httpx.post(bad["url"], data=bad["fields"], files={"file": b"p"})
        assert b"InvalidRedirectLocation" in refused.content
        return ok.status_code, refused.status_code

    assert await asyncio.to_thread(work) == (204, 400)
    head = await asyncio.to_thread(s3.client().head_object, Bucket="pst", Key="posted")
    assert head["WebsiteRedirectLocation"] == "https://example.com/"
