"""The auth service's core: access grants in, S3 credentials out.

A grant (satellite address + project API key + encryption access) is judged
here wherever it is presented — registered for credentials, resolved behind
an access key id by the S3 endpoint or link sharing, or sent whole:

- it must name this satellite (its public URL, with or without scheme);
- its API key must verify (record, signature, revocations, enabled owner);
- its root key must match the project's passphrase verifier. The first grant
  registered for a project fixes the verifier; a grant made with another
  passphrase is refused with "wrong passphrase for project <name>" — never
  shown an empty project;
- its time window must be open.

Credentials are stored as the published auth service stores them (edge's
authdb): found by SHA-256 of the access key id, secret and grant sealed under
a key derived from the id, so the table alone reveals nothing. A record
expires with the grant's earliest ``not_after``. Resolutions are cached per
process for ``KEY_CACHE_SECONDS``; the key behind them is re-verified after
that, so revocation reaches credentials within the same bound.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from jointcloud.core.authz import Principal
from jointcloud.core.buckets import BucketService
from jointcloud.core.keycache import KEY_CACHE_SECONDS, KeyCache
from jointcloud.core.models import ProjectKey
from jointcloud.core.projectkeys import ProjectKeyService
from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    BucketNotFound,
    OutOfScope,
    Unauthorized,
    UnknownAccessKey,
)
from jointcloud.keys import credentials as cred
from jointcloud.keys.grant import Grant, parse_grant
from jointcloud.keys.kdf import passphrase_verifier, verify_passphrase
from jointcloud.meta import keys as keyrepo
from jointcloud.meta.db import Database


@dataclass(frozen=True)
class Credentials:
    """What registering a grant returns, once."""

    access_key_id: str
    secret_key: str
    endpoint: str
    public: bool
    expires: datetime | None


@dataclass(frozen=True)
class ResolvedAccess:
    """What an access key id stands for (for the S3 endpoint, link sharing
    and other services)."""

    access_key_id: str
    secret_key: str
    grant: str
    public: bool
    expires: datetime | None
    principal: Principal


@dataclass(frozen=True)
class ProjectInfo:
    """What a grant's maker needs of the project: its UUID (the salt)."""

    project_uuid: str
    bucket_id: int
    name: str


def satellite_key(address: str) -> str:
    """An address compared without scheme, trailing '/' or letter case."""
    text = address.strip()
    split = urlsplit(text if "://" in text else "//" + text)
    return (split.netloc + split.path.rstrip("/")).lower()


def parse_grant_text(text: object) -> tuple[str, Grant]:
    if not isinstance(text, str) or not text:
        raise BadArgument("access grant must be the grant's text")
    return text, parse_grant(text)  # BadArgument naming the problem


class AccessService:
    def __init__(
        self,
        db: Database,
        keys: ProjectKeyService,
        buckets: BucketService,
        *,
        satellite: str,
        s3_endpoint: str,
        cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self.db = db
        self.keys = keys
        self.buckets = buckets
        self.satellite = satellite
        self.s3_endpoint = s3_endpoint
        self._cache: KeyCache[str, ResolvedAccess] = KeyCache(cache_seconds)

    # -- grants ---------------------------------------------------------------

    async def project_info(self, principal: Principal, bucket_id: int | None) -> ProjectInfo:
        """The project a key is for (``bucket_id`` for an account key)."""
        target = principal.project_id if principal.project_id is not None else bucket_id
        if target is None:
            raise BadArgument("bucketID is required with an account key")
        # As the published satellite's ActionProjectInfo: whatever the key's
        # caveats forbid or reach, only their time window applies (a
        # write-only key makes a grant too).
        timed = Principal(
            principal.user_id,
            principal.project_id,
            tuple(
                dataclasses.replace(c, disallow=frozenset(), paths=()) for c in principal.caveats
            ),
        )
        bucket = await self.buckets.get(timed, target)
        return ProjectInfo(bucket.project_id, bucket.bucket_id, bucket.name)

    async def grant_principal(self, grant: Grant) -> Principal:
        """The principal a grant stands for, after every check above."""
        return (await self._judge(grant))[1]

    def _for_us(self, grant: Grant) -> None:
        if satellite_key(grant.satellite_address) != satellite_key(self.satellite):
            raise AccessDenied(
                f"the access grant is for satellite {grant.satellite_address!r}, "
                f"not this one ({self.satellite})"
            )

    async def set_passphrase(self, principal: Principal, grant_text: object) -> ProjectInfo:
        """Fix the project's passphrase to ``grant_text``'s, replacing the one
        its first grant fixed: that may have been a grant of a restricted key
        the owner gave away before making one. Both the caller and the grant
        must hold an unrestricted key of the project (or the caller its
        account key); credentials of grants of the old passphrase stop
        working once their cached judgement runs out."""
        _, grant = parse_grant_text(grant_text)
        self._for_us(grant)
        record, granted = await self.keys.verify(grant.api_key)
        if granted.caveats or principal.caveats:
            raise AccessDenied(
                "only an unrestricted key of the project may set its passphrase "
                "(the caller's and the grant's key)"
            )
        # Only the caller's own project; a refusal names none (the grant
        # named it, the request did not).
        if principal.user_id != record.user_id:
            raise BucketNotFound("the access grant's project was not found")
        if principal.project_id not in (None, record.bucket_id):
            raise OutOfScope("the key is limited to another project than the access grant's")
        bucket = await self.buckets.get(principal, record.bucket_id)
        if grant.root_key is None:
            raise BadArgument("the access grant carries no root key (made without a passphrase)")
        async with self.db.write() as conn:
            await keyrepo.replace_passphrase_verifier(
                conn, record.bucket_id, passphrase_verifier(grant.root_key)
            )
        self.forget()
        return ProjectInfo(bucket.project_id, bucket.bucket_id, bucket.name)

    async def _judge(self, grant: Grant) -> tuple[ProjectKey, Principal]:
        self._for_us(grant)
        record, principal = await self.keys.verify(grant.api_key)
        expires = grant.api_key.not_after()
        if expires is not None and expires < datetime.now(UTC):
            raise Unauthorized(f"the access grant expired at {expires.isoformat()}")
        if grant.root_key is None:
            raise BadArgument("the access grant carries no root key (made without a passphrase)")
        bucket = await self.buckets.get(Principal.user(record.user_id), record.bucket_id)
        verifier = passphrase_verifier(grant.root_key)
        async with self.db.read() as conn:
            stored = await keyrepo.passphrase_verifier(conn, record.bucket_id)
        if stored is None:  # the project's first grant: it fixes the passphrase
            async with self.db.write() as conn:
                if await keyrepo.set_passphrase_verifier(conn, record.bucket_id, verifier):
                    stored = verifier
                else:  # another grant was first, just now
                    stored = await keyrepo.passphrase_verifier(conn, record.bucket_id)
        if stored is None or not verify_passphrase(grant.root_key, stored):
            raise AccessDenied(f"wrong passphrase for project {bucket.name}")
        return record, principal

    # -- credentials ----------------------------------------------------------

    async def register(self, grant_text: object, *, public: bool = False) -> Credentials:
        """Trade a grant for S3 credentials (shown once)."""
        text, grant = parse_grant_text(grant_text)
        record, _ = await self._judge(grant)
        access_key_id = cred.new_access_key_id()
        secret_key = cred.new_secret_key()
        sealed = cred.seal_record(access_key_id, secret_key, text)
        expires = grant.api_key.not_after()
        async with self.db.write() as conn:
            await keyrepo.add_auth_record(
                conn,
                cred.key_hash(access_key_id),
                record.key_id,
                sealed.encrypted_secret_key,
                sealed.encrypted_access_grant,
                public,
                expires,
            )
        return Credentials(access_key_id, secret_key, self.s3_endpoint, public, expires)

    async def resolve(self, access_key_id: str) -> ResolvedAccess:
        """What an access key id stands for, re-judged at most every
        ``cache_seconds``; ``Unauthorized`` naming why it does not work."""
        resolved = await self._cache.get(access_key_id, lambda: self._resolve(access_key_id))
        if resolved.expires is not None and resolved.expires < datetime.now(UTC):
            raise Unauthorized(f"the credentials expired at {resolved.expires.isoformat()}")
        return resolved

    async def _resolve(self, access_key_id: str) -> ResolvedAccess:
        try:
            cred.parse_access_key_id(access_key_id)
        except BadArgument as exc:
            raise UnknownAccessKey(f"invalid access key id: {exc.message}") from None
        async with self.db.read() as conn:
            record = await keyrepo.get_auth_record(conn, cred.key_hash(access_key_id))
        if record is None:
            raise UnknownAccessKey("unknown access key id")
        if record.expires_at is not None and record.expires_at < datetime.now(UTC):
            raise Unauthorized(f"the credentials expired at {record.expires_at.isoformat()}")
        secret_key, grant_text = cred.open_record(
            access_key_id,
            cred.SealedRecord(record.encrypted_secret_key, record.encrypted_access_grant),
        )
        principal = await self.grant_principal(parse_grant(grant_text))
        return ResolvedAccess(
            access_key_id, secret_key, grant_text, record.public, record.expires_at, principal
        )

    def forget(self) -> None:
        self._cache.clear()
