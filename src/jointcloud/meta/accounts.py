"""Users, API keys and user spaces."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, delete, false, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import SpaceState, User, UserKey, UserRecord, UserSpace
from jointcloud.meta import strays
from jointcloud.meta import tables as t
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import aware, now, to_space


async def create_user(conn: AsyncConnection, name: str) -> User:
    res = await conn.execute(insert(t.users).values(name=name, created_at=now()))
    return User(user_id=int(res.inserted_primary_key[0]), name=name)  # type: ignore[index]


async def delete_new_user(conn: AsyncConnection, user_id: int) -> None:
    """A user that owns nothing yet but keys (an ``add_user`` undone)."""
    await conn.execute(delete(t.api_keys).where(t.api_keys.c.user_id == user_id))
    await conn.execute(delete(t.users).where(t.users.c.id == user_id))


async def get_user_by_name(conn: AsyncConnection, name: str) -> User | None:
    q = select(t.users.c.id, t.users.c.name).where(t.users.c.name == name)
    row = (await conn.execute(q)).first()
    return None if row is None else User(user_id=row.id, name=row.name)


async def list_users(conn: AsyncConnection) -> list[UserRecord]:
    keys = (
        select(func.count())
        .select_from(t.api_keys)
        .where(t.api_keys.c.user_id == t.users.c.id)
        .scalar_subquery()
    )
    q = select(t.users, keys.label("keys")).order_by(t.users.c.id)
    return [
        UserRecord(r.id, r.name, bool(r.disabled), aware(r.created_at), int(r.keys))
        for r in await conn.execute(q)
    ]


async def set_user_disabled(conn: AsyncConnection, user_id: int, disabled: bool) -> None:
    await conn.execute(update(t.users).where(t.users.c.id == user_id).values(disabled=disabled))


async def user_disabled(conn: AsyncConnection, user_id: int) -> bool:
    q = select(t.users.c.disabled).where(t.users.c.id == user_id)
    return bool((await conn.execute(q)).scalar_one_or_none() or False)


async def add_api_key(
    conn: AsyncConnection, user_id: int, key_hash: str, name: str | None = None, hint: str = ""
) -> int:
    values: dict[str, Any] = {"user_id": user_id, "key_hash": key_hash, "created_at": now()}
    if name:
        values["name"] = name
    if hint:
        values["hint"] = hint
    res = await conn.execute(insert(t.api_keys).values(**values))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


async def list_api_keys(conn: AsyncConnection, user_id: int) -> list[UserKey]:
    q = select(t.api_keys).where(t.api_keys.c.user_id == user_id).order_by(t.api_keys.c.id)
    return [
        UserKey(r.id, r.user_id, r.name or "", r.hint or "", aware(r.created_at))
        for r in await conn.execute(q)
    ]


async def delete_api_key(conn: AsyncConnection, key_hash: str) -> bool:
    res = await conn.execute(delete(t.api_keys).where(t.api_keys.c.key_hash == key_hash))
    return bool(res.rowcount)


async def delete_api_key_by_id(conn: AsyncConnection, user_id: int, key_id: int) -> bool:
    res = await conn.execute(
        delete(t.api_keys).where(t.api_keys.c.id == key_id, t.api_keys.c.user_id == user_id)
    )
    return bool(res.rowcount)


async def user_for_key(conn: AsyncConnection, key_hash: str) -> User | None:
    """The enabled user a plain key belongs to (a disabled user has none)."""
    q = (
        select(t.users.c.id, t.users.c.name)
        .join(t.api_keys, t.api_keys.c.user_id == t.users.c.id)
        .where(t.api_keys.c.key_hash == key_hash, t.users.c.disabled == false())
    )
    row = (await conn.execute(q)).first()
    return None if row is None else User(user_id=row.id, name=row.name)


async def create_space(
    conn: AsyncConnection,
    user_id: int,
    name: str,
    storage: dict[str, Any],
    sealed_credential: bytes | None,
    root_path: str,
) -> UserSpace:
    res = await conn.execute(
        insert(t.user_spaces).values(
            user_id=user_id,
            name=name,
            storage=json.dumps(storage),
            credential=sealed_credential,
            root_path=root_path,
            state=SpaceState.NORMAL,
            created_at=now(),
        )
    )
    space = await get_space(conn, int(res.inserted_primary_key[0]))  # type: ignore[index]
    assert space is not None
    return space


async def get_space(conn: AsyncConnection, space_id: int) -> UserSpace | None:
    row = (await conn.execute(select(t.user_spaces).where(t.user_spaces.c.id == space_id))).first()
    return None if row is None else to_space(row)


async def get_space_by_name(conn: AsyncConnection, user_id: int, name: str) -> UserSpace | None:
    q = select(t.user_spaces).where(
        t.user_spaces.c.user_id == user_id, t.user_spaces.c.name == name
    )
    row = (await conn.execute(q)).first()
    return None if row is None else to_space(row)


# Read by every upload of blocks (placement), so built once: building the
# statement was most of a 1 MiB upload's cost of it (py-spy, 2026-12-07).
_SPACES_OF_USER = DriverQuery(
    select(t.user_spaces)
    .where(t.user_spaces.c.user_id == bindparam("user_id"))
    .order_by(t.user_spaces.c.id)
)


async def list_spaces(conn: AsyncConnection, user_id: int) -> list[UserSpace]:
    return [to_space(r) for r in await _SPACES_OF_USER.rows(conn, {"user_id": user_id})]


async def update_space(conn: AsyncConnection, space_id: int, **values: Any) -> None:
    if "storage" in values:
        values["storage"] = json.dumps(values["storage"])
    if values:
        await conn.execute(
            update(t.user_spaces).where(t.user_spaces.c.id == space_id).values(**values)
        )


async def count_blocks_in_space(conn: AsyncConnection, space_id: int) -> int:
    q = select(func.count()).select_from(t.blocks).where(t.blocks.c.user_space_id == space_id)
    return int((await conn.execute(q)).scalar_one())


async def holds_blocks(conn: AsyncConnection, space_id: int) -> bool:
    """Whether the space holds a block at all: the first index entry, not
    a count of them all (taken under a write lock, a count of a space's
    million blocks held every writer for it)."""
    q = select(t.blocks.c.id).where(t.blocks.c.user_space_id == space_id).limit(1)
    return (await conn.execute(q)).first() is not None


async def delete_space(conn: AsyncConnection, space_id: int) -> None:
    # What it was owed goes with it (the foreign key cascades where enforced).
    await strays.forget(conn, space_id)
    await conn.execute(delete(t.user_spaces).where(t.user_spaces.c.id == space_id))
