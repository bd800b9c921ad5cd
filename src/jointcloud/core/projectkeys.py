"""Project API keys: macaroons in the published format, judged here.

A key is created for one project (a JCS bucket) with a random head and a
per-key 32-byte secret that never leaves the server (sealed by the master
key in the database). Whoever holds a key can restrict it offline; the
server checks the whole HMAC chain with the secret, refuses a key any of
whose chain tails was revoked (so revoking a key revokes every key derived
from it, and only those), and turns the key's caveats into the caveats of
the ``Principal`` that ``core/authz.py`` checks on every call.

Verified keys are cached per process for ``KEY_CACHE_SECONDS`` (the same
bound as plain keys): a deleted or revoked key, or a disabled user, stops
working on every process sharing the database within that time.
"""

from __future__ import annotations

import hashlib

from jointcloud.core.authz import (
    Caveat,
    Operation,
    PathGrant,
    Principal,
    authorize,
    require_account,
)
from jointcloud.core.buckets import BucketService
from jointcloud.core.keycache import KEY_CACHE_SECONDS, KeyCache
from jointcloud.core.models import ProjectKey
from jointcloud.core.paths import entity_name
from jointcloud.errors import BadArgument, NotFound, Unauthorized
from jointcloud.keys.caveats import BASIC_PERMISSIONS, APIKey, KeyCaveat, Permission, new_api_key
from jointcloud.keys.macaroon import new_secret
from jointcloud.keys.master import MasterKey
from jointcloud.meta import keys as keyrepo
from jointcloud.meta.db import Database


def _seal_context(head: bytes) -> str:
    return f"project key {head.hex()}"


def to_caveat(c: KeyCaveat) -> Caveat:
    """A published caveat as the one authorization point reads it. An object
    TTL we cannot honour forbids writes rather than being ignored (an ignored
    restriction would widen access)."""
    disallow = {Operation(str(p)) for p in c.disallow & BASIC_PERMISSIONS}
    if c.max_object_ttl is not None:
        disallow.add(Operation.WRITE)
    return Caveat(
        disallow=frozenset(disallow),
        paths=tuple(PathGrant(p.bucket, p.prefix) for p in c.paths),
        not_before=c.not_before,
        not_after=c.not_after,
    )


def parse_key(text: str) -> APIKey:
    """A key's text, or ``Unauthorized`` naming what is wrong with it."""
    try:
        return APIKey.parse(text)
    except BadArgument as exc:
        raise Unauthorized(f"invalid API key: {exc.message}") from None


class ProjectKeyService:
    def __init__(
        self,
        db: Database,
        master: MasterKey,
        buckets: BucketService,
        *,
        cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self.db = db
        self.master = master
        self.buckets = buckets
        self._cache: KeyCache[bytes, Principal] = KeyCache(cache_seconds)

    # -- management (an account key of the owner) -------------------------------

    async def create(
        self, principal: Principal, bucket_id: int, name: str
    ) -> tuple[ProjectKey, str]:
        """A new unrestricted key of the project; its text is returned once."""
        require_account(principal)
        name = entity_name(name, "name")
        bucket = await self.buckets.get(principal, bucket_id)
        secret = new_secret()
        key = new_api_key(secret)
        sealed = self.master.seal_secret(secret, _seal_context(key.head))
        async with self.db.write() as conn:
            record = await keyrepo.add_project_key(
                conn, principal.user_id, bucket.bucket_id, name, key.head, sealed
            )
        return record, key.serialize()

    async def list(self, principal: Principal, bucket_id: int) -> list[ProjectKey]:
        require_account(principal)
        bucket = await self.buckets.get(principal, bucket_id)
        async with self.db.read() as conn:
            return await keyrepo.list_project_keys(conn, bucket.bucket_id)

    async def delete(self, principal: Principal, key_id: int) -> None:
        """Delete a key: it and everything derived from it stop working."""
        require_account(principal)
        async with self.db.write() as conn:
            record = await keyrepo.get_project_key(conn, key_id)
            if record is None or record.user_id != principal.user_id:
                raise NotFound(f"no API key {key_id}")
            await keyrepo.delete_project_key(conn, key_id)
        self._cache.clear()

    async def revoke(self, principal: Principal, text: str) -> ProjectKey:
        """Revoke a (derived) key and every key restricted from it; its parent
        keeps working. The owner may revoke any key of their projects; a
        project key only keys of its own project."""
        key = APIKey.parse(text)  # malformed: BadArgument naming the problem
        async with self.db.read() as conn:
            row = await keyrepo.key_by_head(conn, key.head)
        if (
            row is None
            or row.key.user_id != principal.user_id
            or principal.project_id not in (None, row.key.bucket_id)
        ):
            raise NotFound("no such API key")
        # Revoking is a destructive act: the caller's own key must be valid
        # now and may delete (a read-only or expired key revokes nothing).
        authorize(principal, Operation.DELETE, project_id=row.key.bucket_id)
        valid, tails = key.verify_and_tails(self._secret(row.key.head, row.sealed_secret))
        if not valid:
            raise Unauthorized("invalid API key: its signature does not verify")
        async with self.db.write() as conn:
            await keyrepo.revoke_tail(conn, row.key.key_id, tails[-1])
        self._cache.clear()
        return row.key

    # -- use ---------------------------------------------------------------------

    def forget(self) -> None:
        self._cache.clear()

    def _secret(self, head: bytes, sealed: bytes) -> bytes:
        return self.master.open_secret(sealed, _seal_context(head))

    async def principal(self, text: str) -> Principal:
        """The principal a key stands for: its project, within its caveats."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
        return await self._cache.get(digest, lambda: self._verify(parse_key(text)))

    async def verify(self, key: APIKey) -> tuple[ProjectKey, Principal]:
        """Check a parsed key (a grant's) against the database: its record,
        owner, signature and revocations."""
        async with self.db.read() as conn:  # one snapshot: the key and its revocations
            row = await keyrepo.key_by_head(conn, key.head)
            if row is None:
                raise Unauthorized("unknown API key (deleted, or never issued here)")
            if row.user_disabled:
                raise Unauthorized("the API key's user is disabled")
            valid, tails = key.verify_and_tails(self._secret(row.key.head, row.sealed_secret))
            if not valid:
                raise Unauthorized("invalid API key: its signature does not verify")
            if await keyrepo.any_revoked(conn, tails):
                raise Unauthorized("the API key was revoked")
        caveats = tuple(to_caveat(c) for c in key.caveats())
        return row.key, Principal(row.key.user_id, row.key.bucket_id, caveats)

    async def _verify(self, key: APIKey) -> Principal:
        return (await self.verify(key))[1]


__all__ = ["Permission", "ProjectKeyService", "parse_key", "to_caveat"]
