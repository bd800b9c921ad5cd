"""Helpers of the S3 endpoint's functional tests: ``S3`` holds one project's
credentials from the auth service and makes boto3 clients (their current
defaults: checksums, streaming trailers). boto3 blocks: tests call it
through ``asyncio.to_thread``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from jointcloud.context import Context
from jointcloud.keys.caveats import KeyCaveat
from jointcloud.keys.grant import parse_grant

PASSPHRASE = "s3 test passphrase"


def code_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    """The S3 error code, HTTP status and message ``call`` fails with."""
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


@dataclass
class S3:
    ctx: Context
    endpoint: str
    access_key_id: str
    secret_key: str
    project_id: int
    grant: str

    def client(self, *, session_token: str | None = None, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_key,
            aws_session_token=session_token,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    async def credentials(self, caveat: KeyCaveat | None = None) -> tuple[str, str]:
        """Credentials of the same project, restricted by ``caveat``."""
        grant = parse_grant(self.grant)
        if caveat is not None:
            grant = grant.restrict(caveat)
        made = await self.ctx.access.register(grant.serialize())
        return made.access_key_id, made.secret_key


def multipart_object(client: Any, bucket: str, key: str, *parts: bytes) -> dict[str, Any]:
    """An object uploaded in ``parts`` (no checksums asked); the completion's
    answer."""
    uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(
                Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=raw
            )["ETag"],
        }
        for n, raw in enumerate(parts, 1)
    ]
    answer: dict[str, Any] = client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": listed}
    )
    return answer
