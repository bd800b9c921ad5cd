"""ACLs: every bucket and object is private to its project, so
GetBucketAcl and GetObjectAcl answer the owner with ``FULL_CONTROL``, and
PutBucketAcl / PutObjectAcl accept only what keeps it so: the canned ACL
``private`` or ``bucket-owner-full-control`` (``x-amz-acl``; the writer is
the owner), an ``x-amz-grant-full-control`` naming the
owner alone, or a body granting only the owner ``FULL_CONTROL``. Anything
else is ``400 AccessControlListNotSupported`` (AWS's answer on a bucket
whose ACLs are disabled): public ACLs are not supported here, link
sharing publishes an object.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from starlette.responses import Response

from jointcloud.api.s3.app import op
from jointcloud.api.s3.documents import read_document
from jointcloud.api.s3.errors import (
    InvalidRequestS3,
    MalformedACLError,
    UnexpectedContent,
)
from jointcloud.api.s3.headers import GRANT_HEADERS, acl_refused, check_canned
from jointcloud.api.s3.ops_bucket import owner
from jointcloud.api.s3.ops_object import check_key
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import NAMESPACE, MalformedXMLError, parse
from jointcloud.core.authz import Operation, Principal

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def acl_xml(principal: Principal) -> bytes:
    """``AccessControlPolicy``: the owner, and the owner's ``FULL_CONTROL``.

    Shaped as AWS writes it: ``xmlns`` the root's only attribute, the ``xsi``
    prefix declared on each ``Grantee`` (attributes spelt out, not qualified
    names: ElementTree would move the declaration to the root). s3cmd finds
    the namespace only as the root's first attribute; behind ``xmlns:xsi``
    it read no owner and no grant, and ``s3cmd cp`` put that empty ACL back
    on the copy (refused, found by review)."""
    root = ET.Element("AccessControlPolicy", {"xmlns": NAMESPACE})
    owner_el = ET.SubElement(root, "Owner")
    grants = ET.SubElement(root, "AccessControlList")
    grant = ET.SubElement(grants, "Grant")
    grantee = ET.SubElement(grant, "Grantee", {"xmlns:xsi": XSI, "xsi:type": "CanonicalUser"})
    for parent in (owner_el, grantee):
        for name, value in owner(principal):
            ET.SubElement(parent, name).text = str(value)
    ET.SubElement(grant, "Permission").text = "FULL_CONTROL"
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text


def _owner_id(principal: Principal) -> str:
    return str(dict(owner(principal))["ID"])


_GRANTEE = re.compile(r'^\s*id\s*=\s*"?([0-9A-Za-z]+)"?\s*$')


def _check_grant_headers(r: S3Request) -> bool:
    """Grant headers: only the owner's full control; True if any was sent."""
    sent = False
    for name in GRANT_HEADERS:
        value = r.header(name)
        if value is None:
            continue
        sent = True
        grantees = [g for g in value.split(",") if g.strip()]
        if name != "x-amz-grant-full-control" or not grantees:
            raise acl_refused(name)
        for grantee in grantees:
            found = _GRANTEE.match(grantee)
            if found is None or found.group(1) != _owner_id(r.principal):
                raise acl_refused(f"{name} names someone else than the owner")
    return sent


def _check_policy(body: bytes, principal: Principal) -> None:
    """A body that grants the owner ``FULL_CONTROL`` and nobody anything."""
    try:
        root = parse(body, "AccessControlPolicy")
    except MalformedXMLError as exc:
        raise MalformedACLError(
            "The XML you provided was not well-formed or did not validate against our "
            f"published schema: {exc.message}"
        ) from None
    grants = root.findall("AccessControlList/Grant")
    if not grants:
        raise acl_refused("an ACL that grants the owner nothing")
    mine = _owner_id(principal)
    for grant in grants:
        grantee = grant.find("Grantee")
        permission = (grant.findtext("Permission") or "").strip()
        kind = "" if grantee is None else grantee.get(f"{{{XSI}}}type", "")
        grantee_id = "" if grantee is None else (grantee.findtext("ID") or "").strip()
        if kind != "CanonicalUser" or grantee_id != mine or permission != "FULL_CONTROL":
            raise acl_refused(
                f"only the owner's FULL_CONTROL can be granted; {kind or 'no'} grantee, "
                f"{permission or 'no'} permission"
            )


async def _put_acl(r: S3Request) -> None:
    canned = r.header("x-amz-acl")
    body = await read_document(r)
    granted = _check_grant_headers(r)
    if body.strip() and (canned is not None or granted):
        raise UnexpectedContent("This request does not support content")
    if canned is not None:
        if granted:
            raise InvalidRequestS3("Specifying both Canned ACLs and Header Grants is not allowed")
        check_canned(canned)
    elif not granted:
        if not body.strip():
            raise MalformedACLError(
                "The XML you provided was not well-formed or did not validate against our "
                "published schema: send x-amz-acl: private or an AccessControlPolicy"
            )
        _check_policy(body, r.principal)


def _acl_response(principal: Principal) -> Response:
    return Response(acl_xml(principal), status_code=200, media_type="application/xml")


@op("GetBucketAcl")
async def get_bucket_acl(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.READ)
    return _acl_response(r.principal)


@op("PutBucketAcl")
async def put_bucket_acl(r: S3Request) -> Response:
    await r.ctx.packages.resolve(r.principal, r.package, Operation.WRITE, whole=True)
    await _put_acl(r)
    return Response(status_code=200)


@op("GetObjectAcl")
async def get_object_acl(r: S3Request) -> Response:
    check_key(r)
    await r.ctx.objects.head(r.principal, r.address)
    return _acl_response(r.principal)


@op("PutObjectAcl")
async def put_object_acl(r: S3Request) -> Response:
    check_key(r)
    # Authorized as a write of the object, which must exist (NoSuchKey).
    await r.ctx.packages.resolve(r.principal, r.package, Operation.WRITE, r.key)
    await r.ctx.objects.head(r.principal, r.address)
    await _put_acl(r)
    return Response(status_code=200)
