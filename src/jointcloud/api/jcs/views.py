"""Serialisation of domain records into the v1 JSON shapes."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from jointcloud.core.models import (
    Bucket,
    ContentHash,
    ObjectEntry,
    ObjectInfo,
    Package,
    UserSpace,
)
from jointcloud.redundancy.policy import Redundancy


@functools.lru_cache(maxsize=4096)
def _local_zone(hour: int, zone: tuple[object, ...]) -> tzinfo | None:
    """The server's local offset during one hour since the epoch (looked up
    once per hour a listing touches, not once per timestamp), or ``None``
    (``astimezone`` then looks it up per timestamp) if it changes within
    that hour: most zones change on the hour, but Newfoundland and Lord Howe
    Island at half past. ``zone`` keys the cache on the process's time zone
    setting, which ``time.tzset`` may change."""
    del zone
    first = datetime.fromtimestamp(hour * 3600, UTC).astimezone().tzinfo
    last = datetime.fromtimestamp(hour * 3600 + 3599, UTC).astimezone().tzinfo
    return first if first == last else None


def local(value: datetime) -> datetime:
    """``value`` at the server's local offset. The envelope's orjson writes
    it as RFC 3339, as ``ts`` spells it, in a tenth of the time: a listing's
    1,000 ``isoformat`` calls were a sixth of its CPU (py-spy, 2026-12-04)."""
    if value.tzinfo is UTC and not time.timezone and not time.daylight:
        return value  # a server on UTC: half the cost of a listing's times
    zone = (time.timezone, time.altzone, time.tzname)
    return value.astimezone(_local_zone(int(value.timestamp()) // 3600, zone))


def ts(value: datetime) -> str:
    """RFC 3339 with the server's local offset, as the seed shows."""
    return local(value).isoformat()


@functools.lru_cache(maxsize=256)
def _policy(p: Redundancy) -> dict[str, Any]:
    return p.to_json()


def bucket(b: Bucket) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bucketID": b.bucket_id,
        "name": b.name,
        "createTime": ts(b.create_time),
        "projectID": b.project_id,
    }
    if b.redundancy is not None:
        out["redundancy"] = b.redundancy.to_json()
    return out


def package(p: Package) -> dict[str, Any]:
    out: dict[str, Any] = {
        "packageID": p.package_id,
        "name": p.name,
        "bucketID": p.bucket_id,
        "createTime": ts(p.create_time),
    }
    if p.redundancy is not None:
        out["redundancy"] = p.redundancy.to_json()
    return out


def file_hash(h: ContentHash) -> str:
    """The JCS spelling: ``Full`` + SHA-256 (upper-case hex), or ``Comp`` +
    the SHA-256 of the parts' digests for a multipart object."""
    if not h.sha256:
        return ""
    return ("Comp" if h.composite else "Full") + h.sha256.upper()


def obj(o: ObjectInfo | ObjectEntry) -> dict[str, Any]:
    """An object as the v1 API shows it; its times are datetimes that the
    envelope writes (``local``), so it is for the envelope only."""
    return objs((o,))[0]


def objs(entries: Sequence[ObjectInfo | ObjectEntry]) -> list[dict[str, Any]]:
    """``obj`` of each object, with what is the same for all of them looked
    up once: a listing of 1,000 keys spent a fifth of its CPU rendering
    objects one call at a time (py-spy, 2026-12-07)."""
    at_utc = not time.timezone and not time.daylight  # else times need ``local``
    policies: dict[Redundancy, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    for o in entries:
        created, updated = o.create_time, o.update_time
        if not at_utc or created.tzinfo is not UTC:
            created = local(created)
        if updated == o.create_time:  # mostly: never overwritten, formatted once
            updated = created
        elif not at_utc or updated.tzinfo is not UTC:
            updated = local(updated)
        policy = o.redundancy
        shown = policies.get(policy)
        if shown is None:
            shown = policies[policy] = _policy(policy)
        append(
            {
                "objectID": o.object_id,
                "packageID": o.package_id,
                "path": o.path,
                "size": str(o.size),
                "fileHash": file_hash(o.file_hash),
                "redundancy": shown,
                "createTime": created,
                "updateTime": updated,
            }
        )
    return out


def maybe_obj(o: ObjectInfo | None) -> dict[str, Any] | None:
    return None if o is None else obj(o)


def space(s: UserSpace, masked_credential: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "userSpaceID": s.user_space_id,
        "name": s.name,
        "storage": s.storage,
        "credential": masked_credential,
        "rootPath": s.root_path,
        "state": s.state,
        "latencyMs": s.latency_ms,
        "createTime": ts(s.create_time),
    }
