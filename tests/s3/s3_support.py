"""Helpers of the S3 endpoint's functional tests: ``S3`` holds one project's
credentials from the auth service and makes boto3 clients (their current
defaults: checksums, streaming trailers). boto3 blocks: tests call it
through ``asyncio.to_thread``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from jointcloud.context import Context
from jointcloud.keys.caveats import KeyCaveat
from jointcloud.keys.grant import parse_grant

PASSPHRASE = "s3 test passphrase"


@dataclass
class S3:
    ctx: Context
    endpoint: str
    access_key_id: str
    secret_key: str
    project_id: int
    grant: str

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_key,
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
