"""Object and bucket tagging: Get/Put/DeleteObjectTagging and
Get/Put/DeleteBucketTagging (a bucket's tags are its package's).

The request document is ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...``;
an object holds at most 10 tags, a bucket 50 (AWS's limits, checked in core).
Small request documents are checked against ``Content-MD5`` and an
``x-amz-checksum-*`` header when the client sends them (as AWS does).
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from starlette.responses import Response

from jointcloud.api.s3.app import op
from jointcloud.api.s3.documents import read_document
from jointcloud.api.s3.errors import InvalidTag, MalformedXML, NoSuchTagSet
from jointcloud.api.s3.ops_bucket import xml
from jointcloud.api.s3.ops_object import check_key
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import Value, parse
from jointcloud.core.buckets import MAX_PACKAGE_TAGS
from jointcloud.core.commands import MAX_TAGS, tag_map
from jointcloud.errors import BadArgument


def parse_tagging(body: bytes, limit: int, owner: str) -> dict[str, str]:
    """A ``Tagging`` document: its tags, checked (``InvalidTag`` naming why)."""
    root = parse(body, "Tagging")
    tag_set = root.find("TagSet")
    if tag_set is None:
        raise MalformedXML("The Tagging document has no TagSet element")
    pairs: list[tuple[str, str]] = []
    for tag in tag_set:
        if tag.tag != "Tag":
            raise MalformedXML(f"unexpected element <{tag.tag}> in TagSet")
        pairs.append((_text(tag, "Key"), _text(tag, "Value")))
    if len(pairs) > limit:
        what = "Object tags" if owner == "object" else "Bucket tag count"
        raise InvalidTag(f"{what} cannot be greater than {limit}")
    for key, _ in pairs:
        if key.lower().startswith("aws:"):
            raise InvalidTag("System tags cannot be added/updated by requester")
    try:
        return tag_map(pairs, limit, owner)
    except BadArgument as exc:
        message = exc.message
        if "given twice" in message:
            message = "Cannot provide multiple Tags with the same key"
        raise InvalidTag(message) from None


def _text(tag: Element, name: str) -> str:
    found = tag.findall(name)
    if not found:
        raise MalformedXML(f"a Tag needs a {name} element")
    if len(found) > 1:
        raise MalformedXML(f"a Tag holds more than one {name} element")
    return found[0].text or ""


def tagging_xml(tags: dict[str, str]) -> Response:
    tag_set: list[tuple[str, Value]] = [
        # In key order, as RGW (and ceph's s3-tests) show them.
        ("Tag", [("Key", key), ("Value", tags[key])])
        for key in sorted(tags)
    ]
    return xml("Tagging", [("TagSet", tag_set)])


# --- objects --------------------------------------------------------------------


@op("GetObjectTagging")
async def get_object_tagging(r: S3Request) -> Response:
    check_key(r)
    return tagging_xml(await r.ctx.objects.get_tags(r.principal, r.address))


@op("PutObjectTagging")
async def put_object_tagging(r: S3Request) -> Response:
    check_key(r)
    tags = parse_tagging(await read_document(r), MAX_TAGS, "object")
    await r.ctx.objects.set_tags(r.principal, r.address, tags)
    return Response(status_code=200)


@op("DeleteObjectTagging")
async def delete_object_tagging(r: S3Request) -> Response:
    check_key(r)
    await r.ctx.objects.delete_tags(r.principal, r.address)
    return Response(status_code=204)


# --- buckets --------------------------------------------------------------------


@op("GetBucketTagging")
async def get_bucket_tagging(r: S3Request) -> Response:
    tags = await r.ctx.packages.get_tags(r.principal, r.package)
    if not tags:
        raise NoSuchTagSet("The TagSet does not exist", BucketName=r.bucket)
    return tagging_xml(tags)


@op("PutBucketTagging")
async def put_bucket_tagging(r: S3Request) -> Response:
    tags = parse_tagging(await read_document(r), MAX_PACKAGE_TAGS, "package")
    await r.ctx.packages.set_tags(r.principal, r.package, tags)
    return Response(status_code=204)


@op("DeleteBucketTagging")
async def delete_bucket_tagging(r: S3Request) -> Response:
    await r.ctx.packages.delete_tags(r.principal, r.package)
    return Response(status_code=204)
