"""Users and their plain API keys.

Key look-ups are cached per process, but only for ``KEY_CACHE_SECONDS``: a
key deleted in the database (by any server process sharing it) stops working
everywhere within that time plus one request, which is the revocation bound
(DESIGN §6: no unbounded key caches). Unknown keys are never cached, so a key
created elsewhere works at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from jointcloud.core.authz import Principal, require_account
from jointcloud.core.models import User
from jointcloud.errors import NotFound, Unauthorized
from jointcloud.keys.apikeys import hash_api_key, new_api_key
from jointcloud.meta import accounts
from jointcloud.meta.db import Database

KEY_CACHE_SECONDS = 2.0  # revocation reaches every process within this (< 5 s)
KEY_CACHE_ENTRIES = 10_000


class AccountService:
    def __init__(self, db: Database, *, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[float, User]] = OrderedDict()

    async def authenticate(self, key: str | None) -> User:
        """The user a key belongs to; ``Unauthorized`` for a missing or unknown key.
        (Protocols say how to send it; this layer only judges it.)"""
        if not key:
            raise Unauthorized("missing API key")
        digest = hash_api_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.db.read() as conn:
            user = await accounts.user_for_key(conn, digest)
        if user is None:
            self._cache.pop(digest, None)
            raise Unauthorized("invalid API key")
        self._cache[digest] = (now + self.cache_seconds, user)
        self._cache.move_to_end(digest)
        while len(self._cache) > KEY_CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return user

    async def principal(self, key: str | None) -> Principal:
        """The principal a plain user key stands for: the whole account."""
        return Principal.user((await self.authenticate(key)).user_id)

    async def ensure_user(self, name: str) -> tuple[User, str | None]:
        """Create ``name`` with a fresh API key if missing; the key is returned once."""
        async with self.db.write() as conn:
            user = await accounts.get_user_by_name(conn, name)
            if user is not None:
                return user, None
            user = await accounts.create_user(conn, name)
            key = new_api_key()
            await accounts.add_api_key(conn, user.user_id, hash_api_key(key))
            return user, key

    async def new_key(self, principal: Principal) -> str:
        """A new plain key for the principal's whole account: a restricted key
        cannot mint one (that would lift its own restrictions)."""
        require_account(principal)
        key = new_api_key()
        async with self.db.write() as conn:
            await accounts.add_api_key(conn, principal.user_id, hash_api_key(key))
        return key

    async def delete_key(self, key: str) -> None:
        """Revoke a key: here at once, in every other process within the cache time."""
        digest = hash_api_key(key)
        async with self.db.write() as conn:
            found = await accounts.delete_api_key(conn, digest)
        self._cache.pop(digest, None)
        if not found:
            raise NotFound("no such API key")
