"""Row ↔ model conversion shared by the repositories."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from jointcloud.core.models import (
    NO_META,
    Bucket,
    ChecksumAlgorithm,
    ContentHash,
    ObjectInfo,
    ObjectMeta,
    Package,
    UserSpace,
)
from jointcloud.redundancy.policy import NonePolicy, Redundancy, parse_redundancy


def now() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def dump_policy(policy: Redundancy | None) -> str | None:
    return None if policy is None else json.dumps(policy.to_json())


def load_policy(text: str | None) -> Redundancy | None:
    return None if text is None else load_policy_required(text)


@functools.lru_cache(maxsize=512)
def load_policy_required(text: str) -> Redundancy:
    """A stored policy (a handful of distinct texts: parsed once each;
    policies are frozen, so sharing them is safe)."""
    return parse_redundancy(json.loads(text))


def to_bucket(r: Row[Any, Any, Any, Any, Any, Any]) -> Bucket:
    return Bucket(
        bucket_id=r.id,
        user_id=r.user_id,
        name=r.name,
        project_id=r.project_id,
        redundancy=load_policy(r.redundancy),
        create_time=aware(r.created_at),
    )


def to_package(r: Row[Any, *tuple[Any, ...]]) -> Package:
    own = load_policy(r.redundancy)
    joined = "bucket_redundancy" in r._fields
    return Package(
        package_id=r.id,
        bucket_id=r.bucket_id,
        name=r.name,
        redundancy=own,
        create_time=aware(r.created_at),
        upload_policy=(own or load_policy(r.bucket_redundancy) or NonePolicy()) if joined else None,
    )


def dump_map(values: Mapping[str, str] | None) -> str | None:
    """A string map as stored (JSON text; empty or absent: NULL)."""
    return json.dumps(dict(values), ensure_ascii=False, sort_keys=True) if values else None


def load_map(text: str | None) -> dict[str, str]:
    return {} if not text else dict(json.loads(text))


def meta_values(meta: ObjectMeta | None) -> dict[str, Any]:
    """The object columns that hold ``meta`` (all NULL for None)."""
    meta = meta or ObjectMeta()
    return {
        "content_type": meta.content_type,
        "content_encoding": meta.content_encoding,
        "cache_control": meta.cache_control,
        "content_disposition": meta.content_disposition,
        "expires": meta.expires,
        "user_metadata": dump_map(meta.user_metadata),
        "tags": dump_map(meta.tags),
    }


def checksum_values(checksums: Mapping[ChecksumAlgorithm, str] | None) -> dict[str, Any]:
    return {"checksums": dump_map({str(a): v for a, v in (checksums or {}).items()})}


def to_meta(r: Row[Any]) -> ObjectMeta:
    if (
        r.content_type is None
        and r.content_encoding is None
        and r.cache_control is None
        and r.content_disposition is None
        and r.expires is None
        and r.user_metadata is None
        and r.tags is None
    ):
        return NO_META  # most objects (listings build thousands of these)
    return ObjectMeta(
        content_type=r.content_type,
        content_encoding=r.content_encoding,
        cache_control=r.cache_control,
        content_disposition=r.content_disposition,
        expires=r.expires,
        user_metadata=load_map(r.user_metadata),
        tags=load_map(r.tags),
    )


def to_checksums(text: str | None) -> dict[ChecksumAlgorithm, str]:
    return {ChecksumAlgorithm(a): v for a, v in load_map(text).items()}


# How ``objects.file_hash`` stores a ContentHash: the prefix the first
# release stored (it was the JCS spelling then), kept so no row is rewritten.
_FULL, _COMP = "Full", "Comp"


def dump_hash(h: ContentHash) -> str:
    if not h.sha256:
        return ""
    return (_COMP if h.composite else _FULL) + h.sha256.upper()


def load_hash(text: str) -> ContentHash:
    if text.startswith(_COMP):
        return ContentHash(text[len(_COMP) :].lower(), composite=True)
    if text.startswith(_FULL):
        return ContentHash(text[len(_FULL) :].lower())
    return ContentHash("")


def to_object(r: Row[Any]) -> ObjectInfo:
    return ObjectInfo(
        object_id=r.id,
        package_id=r.package_id,
        path=r.path,
        size=r.size,
        file_hash=load_hash(r.file_hash),
        etag=r.etag,
        redundancy=load_policy_required(r.redundancy),
        create_time=aware(r.created_at),
        update_time=aware(r.updated_at),
        meta=to_meta(r),
        checksums=to_checksums(r.checksums),
    )


def to_space(r: Row[Any]) -> UserSpace:
    return UserSpace(
        user_space_id=r.id,
        user_id=r.user_id,
        name=r.name,
        storage=json.loads(r.storage),
        sealed_credential=r.credential,
        root_path=r.root_path,
        state=r.state,
        create_time=aware(r.created_at),
        latency_ms=r.latency_ms,
    )
