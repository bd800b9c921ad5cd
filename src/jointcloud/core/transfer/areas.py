"""The block areas a transfer keeps out of: JointCloud's own blocks of every
user space on the same storage, whoever owns it, not only of the space the
transfer names (docs/sync.md). Found by review (2026-12-06, seventh
session): a space with another rootPath on the same bucket could take the
other space's block area as a sync source, and deleteSource deleted its
blocks."""

from __future__ import annotations

from jointcloud.core.models import UserSpace
from jointcloud.core.transfer.spec import same_storage
from jointcloud.core.transfer.trees import reserved
from jointcloud.meta import fsck as spaces_repo
from jointcloud.meta.db import Database

# (area relative to the storage's root, the user space whose blocks it holds)
Area = tuple[str, int]


async def block_areas(db: Database, space: UserSpace) -> list[Area]:
    async with db.read() as conn:
        spaces = await spaces_repo.all_spaces(conn)
    found = dict.fromkeys(reserved(space), space.user_space_id)
    for other in spaces:
        if other.user_space_id != space.user_space_id and same_storage(space, other):
            for area in reserved(other):
                found.setdefault(area, other.user_space_id)
    return list(found.items())


def paths(areas: list[Area]) -> tuple[str, ...]:
    return tuple(area for area, _ in areas)
