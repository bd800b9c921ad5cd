"""CORS: Get/Put/DeleteBucketCors, the preflight (``OPTIONS`` on a bucket or
an object) and the CORS headers of ordinary responses to a request that
carries an ``Origin`` header (``cors_headers``, called by the app after
the handler).

The first rule that allows the origin, the method (a preflight's
``Access-Control-Request-Method``) and every header of
``Access-Control-Request-Headers`` answers, as AWS evaluates them. A
preflight carries no credentials, so it is answered from the rules of the
packages of that name (a bucket name is unique per project, not globally;
the first package with a matching rule answers). An ordinary request is
answered from its own package's rules.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import Response

from jointcloud.api.s3.app import op
from jointcloud.api.s3.documents import read_document
from jointcloud.api.s3.errors import (
    AccessForbidden,
    BadRequest,
    InvalidRequestS3,
    MalformedXML,
    NoSuchCORSConfiguration,
)
from jointcloud.api.s3.ops_bucket import xml
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import Value, parse
from jointcloud.core.buckets import check_cors_rules, first_cors_match
from jointcloud.core.models import CorsRule
from jointcloud.errors import BadArgument, DomainError

MAX_CORS_XML = 64 * 1024  # AWS: the document is limited to 64 KB
# Header names a preflight may ask for. Each is matched against the rules
# of every package of the bucket's name: 30,000 names against a rule of
# 1,800 allowed headers took 5.5 s of the event loop (found by review).
# A browser asks for the headers its request sets beyond the safelisted
# ones, a few dozen at most.
MAX_PREFLIGHT_HEADERS = 128
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
NOT_ALLOWED = (  # AWS's wording, its typo included
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution "
    "of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


# --- configuration ---------------------------------------------------------------


def parse_cors(body: bytes) -> list[CorsRule]:
    root = parse(body, "CORSConfiguration")
    rules: list[CorsRule] = []
    for element in root:
        if element.tag != "CORSRule":
            raise MalformedXML(f"unexpected element <{element.tag}> in CORSConfiguration")
        values: dict[str, list[str]] = {}
        for child in element:
            values.setdefault(child.tag, []).append((child.text or "").strip())
        unknown = set(values) - {
            "ID",
            "AllowedMethod",
            "AllowedOrigin",
            "AllowedHeader",
            "ExposeHeader",
            "MaxAgeSeconds",
        }
        if unknown:
            raise MalformedXML(f"unexpected element <{sorted(unknown)[0]}> in CORSRule")
        if not values.get("AllowedMethod") or not values.get("AllowedOrigin"):
            raise MalformedXML("every CORSRule needs AllowedMethod and AllowedOrigin elements")
        if len(values.get("ID", [])) > 1 or len(values.get("MaxAgeSeconds", [])) > 1:
            raise MalformedXML("a CORSRule has at most one ID and one MaxAgeSeconds")
        max_age = None
        if values.get("MaxAgeSeconds"):
            raw = values["MaxAgeSeconds"][0]
            if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
                raise MalformedXML(f"MaxAgeSeconds {raw[:32]!r} is not a non-negative integer")
            max_age = int(raw)
        rules.append(
            CorsRule(
                allowed_methods=tuple(values["AllowedMethod"]),
                allowed_origins=tuple(values["AllowedOrigin"]),
                allowed_headers=tuple(values.get("AllowedHeader", ())),
                expose_headers=tuple(values.get("ExposeHeader", ())),
                max_age_seconds=max_age,
                rule_id=values["ID"][0] if values.get("ID") else None,
            )
        )
    if not rules:
        raise MalformedXML("a CORSConfiguration needs at least one CORSRule")
    return rules


@op("GetBucketCors")
async def get_bucket_cors(r: S3Request) -> Response:
    rules = await r.ctx.packages.get_cors(r.principal, r.package)
    if not rules:
        raise NoSuchCORSConfiguration("The CORS configuration does not exist", BucketName=r.bucket)
    out: list[tuple[str, Value]] = []
    for rule in rules:
        fields: list[tuple[str, Value]] = [("ID", rule.rule_id)]
        fields += [("AllowedHeader", h) for h in rule.allowed_headers]
        fields += [("AllowedMethod", m) for m in rule.allowed_methods]
        fields += [("AllowedOrigin", o) for o in rule.allowed_origins]
        fields += [("ExposeHeader", h) for h in rule.expose_headers]
        fields.append(("MaxAgeSeconds", rule.max_age_seconds))
        out.append(("CORSRule", fields))
    return xml("CORSConfiguration", out)


@op("PutBucketCors")
async def put_bucket_cors(r: S3Request) -> Response:
    rules = parse_cors(await read_document(r, MAX_CORS_XML))
    try:
        check_cors_rules(rules)
    except BadArgument as exc:
        raise InvalidRequestS3(exc.message) from None
    await r.ctx.packages.set_cors(r.principal, r.package, rules)
    return Response(status_code=200)


@op("DeleteBucketCors")
async def delete_bucket_cors(r: S3Request) -> Response:
    await r.ctx.packages.delete_cors(r.principal, r.package)
    return Response(status_code=204)


# --- answering -------------------------------------------------------------------


def _allow_origin(rule: CorsRule, origin: str) -> dict[str, str]:
    """``*`` for a rule that allows any origin (no credentials then), else
    the origin itself with credentials allowed (as AWS answers)."""
    if "*" in rule.allowed_origins and origin not in rule.allowed_origins:
        return {"Access-Control-Allow-Origin": "*"}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}


def _rule_headers(rule: CorsRule, origin: str) -> dict[str, str]:
    out = _allow_origin(rule, origin)
    out["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if rule.expose_headers:
        out["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age_seconds is not None:
        out["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    out["Vary"] = VARY
    return out


def _header_list(value: str | None) -> list[str]:
    return [h.strip().lower() for h in (value or "").split(",") if h.strip()]


@op("PreflightCors")
async def preflight(r: S3Request) -> Response:
    origin = r.header("origin")
    method = r.header("access-control-request-method")
    kind = "BUCKET" if r.target.key is None else "OBJECT"
    if not origin:
        raise BadRequest("Insufficient information. Origin request header needed.")
    if not method:
        raise BadRequest(
            "Invalid Access-Control-Request-Method: null", Method="null", ResourceType=kind
        )
    if method not in ("GET", "PUT", "POST", "DELETE", "HEAD"):
        raise BadRequest(
            f"Invalid Access-Control-Request-Method: {method[:32]}",
            Method=method[:32],
            ResourceType=kind,
        )
    # Case-insensitive names, each once (as browsers send them).
    headers = list(dict.fromkeys(_header_list(r.header("access-control-request-headers"))))
    if len(headers) > MAX_PREFLIGHT_HEADERS:
        raise BadRequest(
            f"Access-Control-Request-Headers names {len(headers)} headers; at most "
            f"{MAX_PREFLIGHT_HEADERS} are taken",
            Method=method,
            ResourceType=kind,
        )
    project = r.caller.project_id if r.caller is not None else None
    configs = await r.ctx.packages.cors_configs(r.bucket, project) if _named(r.bucket) else []
    if not configs:
        raise AccessForbidden(NOT_ENABLED, Method=method, ResourceType=kind)
    rule = first_cors_match(configs, origin, method, headers)
    if rule is None:
        raise AccessForbidden(NOT_ALLOWED, Method=method, ResourceType=kind)
    out = _rule_headers(rule, origin)
    if headers:
        out["Access-Control-Allow-Headers"] = ", ".join(h.lower() for h in headers)
    return Response(status_code=200, headers=out)


def _named(bucket: str) -> bool:
    """Whether ``bucket`` can name a package at all: a path that was not
    UTF-8 decodes to lone surrogates, which no stored name holds."""
    try:
        bucket.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def cors_headers(r: S3Request, headers: MutableHeaders) -> None:
    """Add the CORS headers of the first rule of the request's package that
    allows its ``Origin`` and method (nothing when none does, as AWS).
    Called by the app for requests with an ``Origin`` header only."""
    origin = r.header("origin")
    if not origin or r.target.bucket is None or not _named(r.target.bucket):
        return
    if r.request.scope.get("jcs.operation") == "PreflightCors":
        return
    # The request's own project when it is signed; a browser POST form is
    # not (its project is known only to its handler).
    project = r.caller.project_id if r.caller is not None else None
    try:
        configs = await r.ctx.packages.cors_configs(r.bucket, project)
    except DomainError:
        return
    rule = first_cors_match(configs, origin, r.request.method)
    if rule is not None:
        headers.update(_rule_headers(rule, origin))
