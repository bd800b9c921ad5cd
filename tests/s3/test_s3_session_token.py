"""A session token (``x-amz-security-token``) with credentials that take
none: this server gives out no session credentials, so a token can only be
stale (left in the environment) or someone else's, and AWS refuses a token
it cannot use (``400 InvalidToken``) instead of ignoring it. botocore's own
integration suite expects the 400 (``test_bad_request_on_invalid_credentials``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from botocore.exceptions import ClientError
from s3_support import S3


@pytest.mark.parametrize("signature", ["s3v4", "s3"])
async def test_a_session_token_is_refused(s3: S3, signature: str) -> None:
    owner = s3.client()
    stale = s3.client(session_token="bad-token-causes-400", signature_version=signature)

    def work() -> None:
        owner.create_bucket(Bucket="tok")
        owner.put_object(Bucket="tok", Key="foo.txt", Body=b"asdf")
        with pytest.raises(ClientError) as head:
            stale.head_object(Bucket="tok", Key="foo.txt")
        assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        with pytest.raises(ClientError) as put:
            stale.put_object(Bucket="tok", Key="new.txt", Body=b"x")
        err = put.value.response["Error"]
        assert err["Code"] == "InvalidToken" and "x-amz-security-token" in err["Message"]
        # Presigned, the token rides in the query.
        url = stale.generate_presigned_url("get_object", Params={"Bucket": "tok", "Key": "foo.txt"})
        assert "ecurity-" in url or "Security" in url
        r = httpx.get(url)
        assert r.status_code == 400 and b"<Code>InvalidToken</Code>" in r.content, r.text
        # Nothing was written, and the same credentials without the token work.
        keys = [o["Key"] for o in owner.list_objects_v2(Bucket="tok")["Contents"]]
        assert keys == ["foo.txt"]

    await asyncio.to_thread(work)


async def test_a_post_form_with_a_session_token_is_refused(s3: S3) -> None:
    stale = s3.client(session_token="stale")

    def work() -> httpx.Response:
        s3.client().create_bucket(Bucket="tokpost")
        post = stale.generate_presigned_post("tokpost", "posted")
        assert "x-amz-security-token" in post["fields"]
        return httpx.post(post["url"], data=post["fields"], files={"file": b"p"})

    r = await asyncio.to_thread(work)
    assert r.status_code == 400 and b"<Code>InvalidToken</Code>" in r.content, r.text
