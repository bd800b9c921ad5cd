"""Users and their plain API keys; the operator's user management.

Key look-ups are cached per process, but only for ``KEY_CACHE_SECONDS``: a
key deleted in the database (by any server process sharing it) stops working
everywhere within that time plus one request, which is the revocation bound
(DESIGN §6: no unbounded key caches). Unknown keys are never cached, so a key
created elsewhere works at once (``core/keycache.py``).
"""

from __future__ import annotations

from typing import Protocol

from jointcloud.core.authz import Principal, require_account
from jointcloud.core.keycache import KEY_CACHE_SECONDS, KeyCache
from jointcloud.core.models import User, UserKey, UserRecord
from jointcloud.core.paths import entity_name
from jointcloud.errors import AlreadyExists, DuplicateEntry, NotFound, Unauthorized
from jointcloud.keys.apikeys import PREFIX, hash_api_key, new_api_key
from jointcloud.meta import accounts
from jointcloud.meta.db import Database


class CapabilityKeys(Protocol):
    """Who judges a credential that is not a plain user key (a project's
    macaroon key): ``core.projectkeys``."""

    async def principal(self, key: str) -> Principal: ...

    def forget(self) -> None:
        """Drop this process's cached verifications (a user was disabled)."""


class AccountService:
    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = KEY_CACHE_SECONDS,
        capability_keys: CapabilityKeys | None = None,
    ) -> None:
        self.db = db
        self.capability_keys = capability_keys
        self._cache: KeyCache[str, User] = KeyCache(cache_seconds)

    async def authenticate(self, key: str | None) -> User:
        """The user a key belongs to; ``Unauthorized`` for a missing or unknown key.
        (Protocols say how to send it; this layer only judges it.)"""
        if not key:
            raise Unauthorized("missing API key")
        digest = hash_api_key(key)

        async def load() -> User:
            async with self.db.read() as conn:
                user = await accounts.user_for_key(conn, digest)
            if user is None:
                raise Unauthorized("invalid API key")
            return user

        return await self._cache.get(digest, load)

    async def principal(self, key: str | None) -> Principal:
        """The principal a key stands for: a plain user key the whole account,
        a project key (macaroon) its project within its caveats."""
        if key and not key.startswith(PREFIX) and self.capability_keys is not None:
            return await self.capability_keys.principal(key)
        return Principal.user((await self.authenticate(key)).user_id)

    async def ensure_user(self, name: str, key: str | None = None) -> tuple[User, str | None]:
        """Create ``name`` with an API key if missing (``key``, else a fresh
        one); the key is returned once, only when the user was made."""
        async with self.db.write() as conn:
            user = await accounts.get_user_by_name(conn, name)
            if user is not None:
                return user, None
            user = await accounts.create_user(conn, name)
            key = key or new_api_key()
            await accounts.add_api_key(conn, user.user_id, hash_api_key(key))
            return user, key

    async def new_key(self, principal: Principal, name: str = "") -> tuple[UserKey, str]:
        """A new plain key for the principal's whole account, returned once: a
        restricted key cannot mint one (that would lift its own restrictions)."""
        require_account(principal)
        return await self._add_key(principal.user_id, name)

    async def _add_key(self, user_id: int, name: str) -> tuple[UserKey, str]:
        if name:
            name = entity_name(name, "key name")
        key = new_api_key()
        async with self.db.write() as conn:
            key_id = await accounts.add_api_key(
                conn, user_id, hash_api_key(key), name or None, key[: len(PREFIX) + 4]
            )
            listed = {k.key_id: k for k in await accounts.list_api_keys(conn, user_id)}
        return listed[key_id], key

    async def list_keys(self, principal: Principal) -> list[UserKey]:
        require_account(principal)
        async with self.db.read() as conn:
            return await accounts.list_api_keys(conn, principal.user_id)

    async def delete_key_by_id(self, principal: Principal, key_id: int) -> None:
        """Delete one of the principal's own keys; it stops working in every
        process within the cache time."""
        require_account(principal)
        async with self.db.write() as conn:
            if not await accounts.delete_api_key_by_id(conn, principal.user_id, key_id):
                raise NotFound(f"no user key {key_id}")
        self._cache.clear()

    # -- the operator's user management (CLI on the server machine) ------------

    async def add_user(self, name: str) -> tuple[User, str]:
        """A new user with a first key, returned once."""
        name = entity_name(name, "user name")
        try:
            async with self.db.write() as conn:
                if await accounts.get_user_by_name(conn, name) is not None:
                    raise AlreadyExists(f"user {name!r} already exists")
                user = await accounts.create_user(conn, name)
        except DuplicateEntry:
            raise AlreadyExists(f"user {name!r} already exists") from None
        _, key = await self._add_key(user.user_id, "first key")
        return user, key

    async def undo_add_user(self, user_id: int) -> None:
        """Take back a user just added whose set-up failed after
        ``add_user`` (it owns nothing but its first key), so the operator
        can add it again."""
        async with self.db.write() as conn:
            await accounts.delete_new_user(conn, user_id)
        self._cache.clear()

    async def list_users(self) -> list[UserRecord]:
        async with self.db.read() as conn:
            return await accounts.list_users(conn)

    async def has_user(self, name: str) -> bool:
        async with self.db.read() as conn:
            return await accounts.get_user_by_name(conn, name) is not None

    async def user_named(self, name: str) -> User:
        async with self.db.read() as conn:
            user = await accounts.get_user_by_name(conn, name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    async def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (or enable again) a user: every key, project key and
        credential of theirs stops working within the cache time."""
        user = await self.user_named(name)
        async with self.db.write() as conn:
            await accounts.set_user_disabled(conn, user.user_id, disabled)
        self._cache.clear()
        if self.capability_keys is not None:
            self.capability_keys.forget()
        return user

    async def new_key_for(self, name: str) -> str:
        """The operator issues a user another key (e.g. when they lost theirs)."""
        user = await self.user_named(name)
        _, key = await self._add_key(user.user_id, "")
        return key

    async def delete_key(self, key: str) -> None:
        """Revoke a key: here at once, in every other process within the cache time."""
        digest = hash_api_key(key)
        async with self.db.write() as conn:
            found = await accounts.delete_api_key(conn, digest)
        self._cache.pop(digest)
        if not found:
            raise NotFound("no such API key")
