"""Row ↔ model conversion shared by the repositories."""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from jointcloud.core.models import (
    NO_META,
    Bucket,
    ChecksumAlgorithm,
    ContentHash,
    ListedObject,
    ObjectEntry,
    ObjectInfo,
    ObjectMeta,
    Package,
    UserSpace,
)
from jointcloud.meta import tables as t
from jointcloud.redundancy.policy import NonePolicy, Redundancy, parse_redundancy


def now() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def stamp(value: datetime | str) -> datetime:
    """A timestamp column as a driver returns it (``driver.DriverQuery``):
    SQLite's text as SQLAlchemy stored it, or PostgreSQL's datetime."""
    if isinstance(value, str):
        try:  # stored as UTC without an offset; parsing one is 6x cheaper than replace()
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # written with an offset of its own
            return datetime.fromisoformat(value).astimezone(UTC)
    return aware(value)


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
        "content_language": meta.content_language,
        "website_redirect_location": meta.website_redirect_location,
        "user_metadata": dump_map(meta.user_metadata),
        "tags": dump_map(meta.tags),
    }


def checksum_values(checksums: Mapping[ChecksumAlgorithm, str] | None) -> dict[str, Any]:
    return {"checksums": dump_map({str(a): v for a, v in (checksums or {}).items()})}


def to_meta(r: Row[Any]) -> ObjectMeta:
    """The metadata columns of any row that has them (by name)."""
    return _meta(
        r.content_type,
        r.content_encoding,
        r.cache_control,
        r.content_disposition,
        r.expires,
        r.content_language,
        r.website_redirect_location,
        r.user_metadata,
        r.tags,
    )


def _meta(
    content_type: str | None,
    content_encoding: str | None,
    cache_control: str | None,
    content_disposition: str | None,
    expires: str | None,
    content_language: str | None,
    website_redirect_location: str | None,
    user_metadata: str | None,
    tags: str | None,
) -> ObjectMeta:
    headers = _headers_only(
        content_type,
        content_encoding,
        cache_control,
        content_disposition,
        expires,
        content_language,
        website_redirect_location,
    )
    if user_metadata is None and tags is None:
        return headers
    return dataclasses.replace(headers, user_metadata=load_map(user_metadata), tags=load_map(tags))


@functools.lru_cache(maxsize=1024)
def _headers_only(
    content_type: str | None,
    content_encoding: str | None,
    cache_control: str | None,
    content_disposition: str | None,
    expires: str | None,
    content_language: str | None,
    website_redirect_location: str | None,
) -> ObjectMeta:
    """Metadata of content headers only, shared (frozen, no mappings of its
    own): objects mostly differ in content type at most, and a listing
    should not build a thousand equal records."""
    if (
        content_type is None
        and content_encoding is None
        and cache_control is None
        and content_disposition is None
        and expires is None
        and content_language is None
        and website_redirect_location is None
    ):
        return NO_META
    return ObjectMeta(
        content_type=content_type,
        content_encoding=content_encoding,
        cache_control=cache_control,
        content_disposition=content_disposition,
        expires=expires,
        content_language=content_language,
        website_redirect_location=website_redirect_location,
    )


_ALGORITHMS = {a.value: a for a in ChecksumAlgorithm}


def to_checksums(text: str | None) -> dict[ChecksumAlgorithm, str]:
    if not text:
        return {}
    return {_ALGORITHMS[a]: v for a, v in json.loads(text).items()}


# How ``objects.file_hash`` stores a ContentHash: the prefix the first
# release stored (it was the JCS spelling then), kept so no row is rewritten.
_FULL, _COMP = "Full", "Comp"


def dump_hash(h: ContentHash) -> str:
    if not h.sha256:
        return ""
    return (_COMP if h.composite else _FULL) + h.sha256.upper()


_EMPTY_HASH = ContentHash("")
# A listing loads one hash and one entry per object: tuple.__new__ skips
# the NamedTuple constructor's Python frame (a third of load_hash).
_tuple = tuple.__new__


def load_hash(text: str) -> ContentHash:
    kind = text[:4]
    if kind == _FULL:
        return _tuple(ContentHash, (text[4:].lower(), False))
    if kind == _COMP:
        return _tuple(ContentHash, (text[4:].lower(), True))
    return _EMPTY_HASH


# Rows of ``objects`` are read by position (a listing converts thousands:
# positions cost less than names). Every caller selects the whole table.
_OBJECT_COLUMNS = [c.key for c in t.objects.columns]
_META_COLUMNS = operator.itemgetter(
    *(
        _OBJECT_COLUMNS.index(c)
        for c in (
            "content_type",
            "content_encoding",
            "cache_control",
            "content_disposition",
            "expires",
            "content_language",
            "website_redirect_location",
            "user_metadata",
            "tags",
        )
    )
)
_CORE_COLUMNS = operator.itemgetter(
    *(
        _OBJECT_COLUMNS.index(c)
        for c in (
            "id",
            "package_id",
            "path",
            "size",
            "file_hash",
            "etag",
            "redundancy",
            "created_at",
            "updated_at",
            "checksums",
        )
    )
)


def to_object(r: Sequence[Any]) -> ObjectInfo:
    """A whole row of ``objects``, from SQLAlchemy or the driver."""
    oid, package_id, path, size, file_hash, etag, redundancy, created, updated, checksums = (
        _CORE_COLUMNS(r)
    )
    return ObjectInfo(
        object_id=oid,
        package_id=package_id,
        path=path,
        size=size,
        file_hash=load_hash(file_hash),
        etag=etag,
        redundancy=load_policy_required(redundancy),
        create_time=stamp(created),
        update_time=stamp(updated),
        meta=_meta(*_META_COLUMNS(r)),
        checksums=to_checksums(checksums),
    )


def to_entry(r: Sequence[Any]) -> ObjectEntry:
    """A row of ``catalog.ENTRY_COLUMNS``, as the driver returns it."""
    oid, package_id, path, size, file_hash, redundancy, created, updated = r
    create_time = stamp(created)
    return _tuple(
        ObjectEntry,
        (
            oid,
            package_id,
            path,
            size,
            load_hash(file_hash),
            load_policy_required(redundancy),
            create_time,
            # Mostly the same instant (never overwritten): parsed once.
            create_time if updated == created else stamp(updated),
        ),
    )


def to_listed(r: Sequence[Any]) -> ListedObject:
    """A row of ``catalog.LISTED_COLUMNS``, as the driver returns it."""
    path, size, etag, updated, checksums = r
    return ListedObject(
        path,
        size,
        etag,
        stamp(updated),
        checksum_algorithms(checksums),
    )


# In the JSON of ``checksum_values`` names are algorithm names (upper-case
# letters and digits) and values base64, which has no quote or colon: this
# matches the names only, in their stored order.
_CHECKSUM_NAMES = re.compile(r'"([A-Z0-9]+)":')


# A map of one entry (what SDKs send by default) starts with one of these,
# and holds no comma: the common case costs a slice and a lookup.
_ONE_ENTRY = {f'{{"{a.value}": ': (a,) for a in ChecksumAlgorithm}


def checksum_algorithms(text: str | None) -> tuple[ChecksumAlgorithm, ...]:
    """The algorithms of a stored checksum map, without decoding its values
    (a listing needs only the names: a listing of 1,000 keys reads 1,000)."""
    if not text:
        return ()
    if "," not in text:
        one = _ONE_ENTRY.get(text[: text.find('"', 2) + 3])
        if one is not None:
            return one
    return tuple([_ALGORITHMS[name] for name in _CHECKSUM_NAMES.findall(text)])


def to_space(r: Sequence[Any]) -> UserSpace:
    """A whole row of ``user_spaces``, from SQLAlchemy or the driver (by
    position: a driver's row has no attributes, its time may be text)."""
    sid, user_id, name, storage, credential, root_path, state, latency_ms, created = r
    return UserSpace(
        user_space_id=sid,
        user_id=user_id,
        name=name,
        storage=json.loads(storage),
        sealed_credential=credential,
        root_path=root_path,
        state=state,
        create_time=stamp(created),
        latency_ms=latency_ms,
    )
