"""Serialisation of domain records into the v1 JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jointcloud.core.models import Bucket, ContentHash, ObjectInfo, Package, UserSpace


def ts(value: datetime) -> str:
    """RFC 3339 with the server's local offset, as the seed shows."""
    return value.astimezone().isoformat()


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


def obj(o: ObjectInfo) -> dict[str, Any]:
    return {
        "objectID": o.object_id,
        "packageID": o.package_id,
        "path": o.path,
        "size": str(o.size),
        "fileHash": file_hash(o.file_hash),
        "redundancy": o.redundancy.to_json(),
        "createTime": ts(o.create_time),
        "updateTime": ts(o.update_time),
    }


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
