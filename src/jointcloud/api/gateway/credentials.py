"""Keys, grants and credentials for the facade's callers (seed 003).

* ``createRestrictKey`` narrows an API key offline: one caveat allowing the
  chosen permissions on the given buckets within a time window.
* ``createAccessGrant`` asks the satellite (``GET /v1/project/info`` with the
  key as ``Bearer``) which project the key is for — which also checks the
  key — and builds the grant: satellite, key, and the root key derived from
  the password and the project's UUID. A wrong password is not detectable
  here (the satellite keeps only a verifier): the grant is refused with
  "wrong passphrase for project ..." when it is first registered or used.
* ``createCredentials`` registers a grant at the auth service named by the
  caller and answers what it answers.
* ``shareUrl`` makes a read+list grant for one object, registers it as
  public, and answers ``<base_url>/<access_key_id>/<bucket>%2F<key>``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.api.gateway.fetch import fetch
from jointcloud.api.gateway.pools import Pool
from jointcloud.api.gateway.urls import service_url
from jointcloud.core.outbound import OutboundGuard
from jointcloud.core.paths import entity_name, object_key
from jointcloud.errors import BadArgument
from jointcloud.keys.caveats import MAX_BASE58, APIKey, CaveatPath, KeyCaveat, Permission
from jointcloud.keys.grant import new_grant

# Argon2id takes 64 MiB and a core for a while: two at once, in threads of
# their own (found by review, 2026-12-06: 16 grants at once on the default
# pool added 1 GiB and delayed the server's writes). A grant waits up to
# ARGON_PATIENCE for its turn, then is answered "busy".
ARGON_THREADS = 2
ARGON_PATIENCE = 10.0
ARGON_POOL = Pool(
    "jcs-gateway-argon2", threads=ARGON_THREADS, slots=ARGON_THREADS, what="access grants"
)
ACCESS_PATH = "/v1/access"
INFO_PATH = "/v1/project/info"
# A caveat path is some 5 bytes besides its name, and a key is read back up
# to MAX_BASE58 characters (about 6,000 bytes): more buckets never fit.
MAX_BUCKETS = 1000
_BASE58_PER_BYTE = math.log(256, 58)  # about 1.3658 characters per byte
_BASE58CHECK_EXTRA = 5  # the version byte and the 4-byte checksum


def parse_key(text: str, what: str) -> APIKey:
    try:
        return APIKey.parse(text.strip())
    except BadArgument as exc:
        raise GatewayError(f"invalid parameter {what}: {exc.message}") from None


def restrict(
    key: APIKey,
    allow: Iterable[Permission],
    paths: Iterable[CaveatPath],
    not_before: datetime | None,
    not_after: datetime | None,
) -> APIKey:
    try:
        caveat = KeyCaveat.allowing(allow, paths=paths, not_before=not_before, not_after=not_after)
        return key.restrict(caveat)
    except BadArgument as exc:
        raise GatewayError(exc.message) from None


def bucket_paths(names: Iterable[str]) -> list[CaveatPath]:
    """One caveat path per bucket, each name checked as a package name is
    (no NUL, '/', '..' or surrounding spaces; at most 255 bytes)."""
    unique = list(dict.fromkeys(names))
    if len(unique) > MAX_BUCKETS:
        raise GatewayError(
            f"invalid parameter buckets: {len(unique)} buckets; a key names at most {MAX_BUCKETS}"
        )
    return [CaveatPath(entity_name(name, "buckets")) for name in unique]


def object_path(bucket: str, key: str) -> CaveatPath:
    """The caveat path of one object: a package name and an S3 key (at most
    1,024 bytes, as S3 takes)."""
    return CaveatPath(entity_name(bucket, "bucket"), object_key(key, "key"))


def serialize(key: APIKey) -> str:
    """The key's text, refused before encoding when it would be longer than
    every reader takes: base58 costs the square of its length, on the loop."""
    estimate = math.ceil((len(key.to_bytes()) + _BASE58CHECK_EXTRA) * _BASE58_PER_BYTE)
    if estimate > MAX_BASE58 + 1:  # the estimate may overshoot by one
        raise GatewayError(_too_long(estimate))
    text = key.serialize()
    if len(text) > MAX_BASE58:
        raise GatewayError(_too_long(len(text)))
    return text


def _too_long(length: int) -> str:
    return (
        f"the restricted key would be about {length} characters long; keys are read "
        f"up to {MAX_BASE58} characters (name fewer or shorter buckets)"
    )


async def project_info(satellite: str, key: str) -> dict[str, Any]:
    """``GET <satellite>/v1/project/info`` with ``key``: the key's project."""
    url = satellite + INFO_PATH
    response = await fetch(
        "GET", url, f"satellite {satellite}", headers={"Authorization": f"Bearer {key}"}
    )
    body = response.json()
    if not isinstance(body, dict):
        text = response.text.strip()[:500]
        raise GatewayError(f"satellite {satellite}: HTTP {response.status}: {text}")
    data = body.get("data")
    if response.status != 200 or body.get("code") != "OK" or not isinstance(data, dict):
        message = body.get("message") or body.get("code") or "no answer"
        raise GatewayError(
            f"satellite {satellite} refused the key: {message} (HTTP {response.status})"
        )
    return data


def _same_project(given: str, info: dict[str, Any]) -> bool:
    text = given.strip()
    if text == str(info.get("bucketID")):
        return True
    try:
        return uuid.UUID(text) == uuid.UUID(str(info.get("projectID")))
    except ValueError:
        return False


async def access_grant(
    outbound: OutboundGuard,
    satellite_url: str,
    key_text: str,
    password: str,
    project_id: str | None,
    *,
    info_key: str | None = None,
) -> str:
    """The serialized grant for ``key_text`` (checked at the satellite, with
    ``info_key`` when given: the key it was restricted from, which the
    satellite takes even when ``key_text`` is not valid yet)."""
    satellite = service_url(satellite_url, "parameter satellite_node_url")
    await outbound.check(satellite, "parameter satellite_node_url")
    key = parse_key(key_text, "restrict_key")
    info = await project_info(satellite, info_key or key.serialize())
    project_uuid = str(info.get("projectID") or "")
    if project_id and not _same_project(project_id, info):
        raise GatewayError(
            f"invalid parameter project_id: the key is for project {project_uuid}, "
            f"not {project_id.strip()}"
        )
    address = str(info.get("satellite") or satellite)

    def build() -> str:
        return new_grant(address, key, password, project_uuid).serialize()

    try:
        return await ARGON_POOL.run(build, patience=ARGON_PATIENCE, deadline=None)
    except BadArgument as exc:
        raise GatewayError(exc.message) from None


async def register(
    outbound: OutboundGuard, auth_service: str, grant: str, *, public: bool
) -> dict[str, str]:
    """``POST <auth_service>/v1/access``: the auth service's answer; its
    plain-text error becomes the message."""
    base = service_url(auth_service, "parameter auth_service")
    await outbound.check(base, "parameter auth_service")
    url = base if urlsplit(base).path.rstrip("/").endswith(ACCESS_PATH) else base + ACCESS_PATH
    response = await fetch(
        "POST", url, f"auth service {base}", json={"access_grant": grant, "public": public}
    )
    if response.status != 200:
        text = response.text.strip()[:500] or f"HTTP {response.status}"
        raise GatewayError(text)
    body = response.json()
    fields = ("access_key_id", "secret_key", "endpoint")
    if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
        raise GatewayError(f"auth service {base}: unexpected answer")
    return {f: body[f] for f in fields}


def share_path(access_key_id: str, bucket: str, key: str) -> str:
    """``<access_key_id>/<bucket>%2F<key>``, as the seed's share URLs read."""
    return f"{quote(access_key_id, safe='')}/{quote(bucket + '/' + key, safe='')}"
