"""Users and their plain API keys."""

from __future__ import annotations

from jointcloud.core.models import User
from jointcloud.errors import Unauthorized
from jointcloud.keys.apikeys import hash_api_key, new_api_key
from jointcloud.meta import accounts
from jointcloud.meta.db import Database


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, User] = {}

    async def authenticate(self, key: str | None) -> User:
        if not key:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        digest = hash_api_key(key)
        user = self._cache.get(digest)
        if user is None:
            async with self.db.read() as conn:
                user = await accounts.user_for_key(conn, digest)
            if user is None:
                raise Unauthorized("invalid API key")
            self._cache[digest] = user
        return user

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

    async def new_key(self, user_id: int) -> str:
        key = new_api_key()
        async with self.db.write() as conn:
            await accounts.add_api_key(conn, user_id, hash_api_key(key))
        return key
