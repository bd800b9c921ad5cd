"""Project API keys (macaroons), revoked tails, passphrase verifiers and the
auth service's credential records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import ProjectKey
from jointcloud.meta import tables as t
from jointcloud.meta.rows import aware, now


@dataclass(frozen=True)
class KeyRow:
    """What verifying a key needs in one read: the key, its sealed secret and
    whether its owner may still act."""

    key: ProjectKey
    sealed_secret: bytes
    user_disabled: bool


@dataclass(frozen=True)
class AuthRecord:
    project_key_id: int
    encrypted_secret_key: bytes
    encrypted_access_grant: bytes
    public: bool
    expires_at: datetime | None


def _key(r: Row[Any]) -> ProjectKey:
    return ProjectKey(r.id, r.user_id, r.bucket_id, r.name, bytes(r.head), aware(r.created_at))


async def add_project_key(
    conn: AsyncConnection, user_id: int, bucket_id: int, name: str, head: bytes, sealed: bytes
) -> ProjectKey:
    res = await conn.execute(
        insert(t.project_keys).values(
            user_id=user_id,
            bucket_id=bucket_id,
            name=name,
            head=head,
            secret=sealed,
            created_at=now(),
        )
    )
    key_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    row = (await conn.execute(select(t.project_keys).where(t.project_keys.c.id == key_id))).one()
    return _key(row)


async def list_project_keys(conn: AsyncConnection, bucket_id: int) -> list[ProjectKey]:
    q = (
        select(t.project_keys)
        .where(t.project_keys.c.bucket_id == bucket_id)
        .order_by(t.project_keys.c.id)
    )
    return [_key(r) for r in await conn.execute(q)]


async def get_project_key(conn: AsyncConnection, key_id: int) -> ProjectKey | None:
    row = (await conn.execute(select(t.project_keys).where(t.project_keys.c.id == key_id))).first()
    return None if row is None else _key(row)


async def key_by_head(conn: AsyncConnection, head: bytes) -> KeyRow | None:
    q = (
        select(t.project_keys, t.users.c.disabled)
        .join(t.users, t.users.c.id == t.project_keys.c.user_id)
        .where(t.project_keys.c.head == head)
    )
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    return KeyRow(_key(row), bytes(row.secret), bool(row.disabled))


async def delete_project_key(conn: AsyncConnection, key_id: int) -> bool:
    res = await conn.execute(delete(t.project_keys).where(t.project_keys.c.id == key_id))
    return bool(res.rowcount)


async def revoke_tail(conn: AsyncConnection, key_id: int, tail: bytes) -> None:
    exists = select(t.revoked_tails.c.tail).where(t.revoked_tails.c.tail == tail)
    if (await conn.execute(exists)).first() is None:
        await conn.execute(
            insert(t.revoked_tails).values(tail=tail, project_key_id=key_id, revoked_at=now())
        )


async def any_revoked(conn: AsyncConnection, tails: Iterable[bytes]) -> bool:
    q = select(t.revoked_tails.c.tail).where(t.revoked_tails.c.tail.in_(list(tails))).limit(1)
    return (await conn.execute(q)).first() is not None


async def passphrase_verifier(conn: AsyncConnection, bucket_id: int) -> bytes | None:
    q = select(t.buckets.c.passphrase_verifier).where(t.buckets.c.id == bucket_id)
    value = (await conn.execute(q)).scalar_one_or_none()
    return None if value is None else bytes(value)


async def set_passphrase_verifier(conn: AsyncConnection, bucket_id: int, verifier: bytes) -> bool:
    """Set the verifier if none is set yet; False when another was first."""
    res = await conn.execute(
        update(t.buckets)
        .where(t.buckets.c.id == bucket_id, t.buckets.c.passphrase_verifier.is_(None))
        .values(passphrase_verifier=verifier)
    )
    return bool(res.rowcount)


async def replace_passphrase_verifier(
    conn: AsyncConnection, bucket_id: int, verifier: bytes
) -> None:
    await conn.execute(
        update(t.buckets).where(t.buckets.c.id == bucket_id).values(passphrase_verifier=verifier)
    )


async def add_auth_record(
    conn: AsyncConnection,
    key_hash: bytes,
    project_key_id: int,
    encrypted_secret_key: bytes,
    encrypted_access_grant: bytes,
    public: bool,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        insert(t.auth_records).values(
            key_hash=key_hash,
            project_key_id=project_key_id,
            encrypted_secret_key=encrypted_secret_key,
            encrypted_access_grant=encrypted_access_grant,
            public=public,
            expires_at=expires_at,
            created_at=now(),
        )
    )


async def get_auth_record(conn: AsyncConnection, key_hash: bytes) -> AuthRecord | None:
    q = select(t.auth_records).where(t.auth_records.c.key_hash == key_hash)
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    expires = None if row.expires_at is None else aware(row.expires_at)
    return AuthRecord(
        row.project_key_id,
        bytes(row.encrypted_secret_key),
        bytes(row.encrypted_access_grant),
        bool(row.public),
        expires,
    )


async def delete_expired_auth_records(conn: AsyncConnection, before: datetime) -> int:
    res = await conn.execute(delete(t.auth_records).where(t.auth_records.c.expires_at < before))
    return int(res.rowcount or 0)
