"""Bucket encryption and the public access block, as far as they describe
what is true here.

Every object is encrypted at rest with keys of the server (AES-256-GCM
under a data key per layout, wrapped by the master key): what AWS calls
SSE-S3, its default for every bucket since 2023. So:

- ``GetBucketEncryption`` always answers that configuration (AWS answers it
  for a bucket nobody configured);
- ``PutBucketEncryption`` of SSE-S3 (``AES256``) is accepted and changes
  nothing; SSE-KMS and DSSE-KMS answer ``501 NotImplemented``;
- ``DeleteBucketEncryption`` answers 204, and SSE-S3 stays (as on AWS).

Nothing here can be public (no public ACLs or policies), so deleting a
bucket's public access block answers 204 and leaves it exactly as
private. Reading or setting one stays ``501``: there is no configuration
to show. The AWS SDKs' own integration suites call Put and Delete in
their set-up; both used to answer 501, which stopped every test.
"""

from __future__ import annotations

from starlette.responses import Response

from jointcloud.api.s3.app import op
from jointcloud.api.s3.documents import read_document
from jointcloud.api.s3.errors import MalformedXML, NotImplementedOp
from jointcloud.api.s3.ops_bucket import xml
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import Value, child_text, parse
from jointcloud.core.authz import Operation

SSE_S3 = "AES256"
KMS = ("aws:kms", "aws:kms:dsse")
MAX_ENCRYPTION_XML = 64 * 1024


def parse_algorithms(body: bytes) -> list[str]:
    """The ``SSEAlgorithm`` of each rule of a ``ServerSideEncryptionConfiguration``."""
    root = parse(body, "ServerSideEncryptionConfiguration")
    algorithms = []
    for rule in root:
        if rule.tag != "Rule":
            raise MalformedXML(
                f"unexpected element <{rule.tag}> in ServerSideEncryptionConfiguration"
            )
        default = next((c for c in rule if c.tag == "ApplyServerSideEncryptionByDefault"), None)
        algorithm = child_text(default, "SSEAlgorithm") if default is not None else None
        if algorithm is None:
            raise MalformedXML("every Rule needs ApplyServerSideEncryptionByDefault/SSEAlgorithm")
        algorithms.append(algorithm.strip())
    if not algorithms:
        raise MalformedXML("ServerSideEncryptionConfiguration holds no Rule")
    return algorithms


@op("GetBucketEncryption")
async def get_bucket_encryption(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.READ)
    default: list[tuple[str, Value]] = [("SSEAlgorithm", SSE_S3)]
    rule: list[tuple[str, Value]] = [
        ("ApplyServerSideEncryptionByDefault", default),
        ("BucketKeyEnabled", False),
    ]
    return xml("ServerSideEncryptionConfiguration", [("Rule", rule)])


@op("PutBucketEncryption")
async def put_bucket_encryption(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.WRITE, whole=True)
    for algorithm in parse_algorithms(await read_document(r, MAX_ENCRYPTION_XML)):
        if algorithm in KMS:
            raise NotImplementedOp(
                f"SSEAlgorithm {algorithm} is not supported here: every object is already "
                "encrypted at rest with keys of the server (AES256)"
            )
        if algorithm != SSE_S3:
            raise MalformedXML(
                f"SSEAlgorithm {algorithm[:32]!r} is not AES256, aws:kms or aws:kms:dsse"
            )
    return Response(status_code=200)


@op("DeleteBucketEncryption")
async def delete_bucket_encryption(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.WRITE, whole=True)
    return Response(status_code=204)


@op("DeletePublicAccessBlock")
async def delete_public_access_block(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.WRITE, whole=True)
    return Response(status_code=204)
