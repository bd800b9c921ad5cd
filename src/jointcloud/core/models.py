"""Domain records passed between ``meta`` repositories, services and protocols."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from jointcloud.redundancy.policy import Redundancy


class SpaceState(StrEnum):
    """A user space's state: ``Normal`` receives blocks; health probes move a
    failing one to ``Unavailable`` and back; ``Draining`` is its owner's
    decision (its blocks move away, then it can be deleted)."""

    NORMAL = "Normal"
    UNAVAILABLE = "Unavailable"
    DRAINING = "Draining"


@dataclass(frozen=True)
class User:
    user_id: int
    name: str


@dataclass(frozen=True)
class Bucket:
    bucket_id: int
    user_id: int
    name: str
    project_id: str
    redundancy: Redundancy | None
    create_time: datetime


@dataclass(frozen=True)
class Package:
    package_id: int
    bucket_id: int
    name: str
    redundancy: Redundancy | None
    create_time: datetime


@dataclass(frozen=True)
class ObjectInfo:
    object_id: int
    package_id: int
    path: str
    size: int
    file_hash: str
    etag: str
    redundancy: Redundancy
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class UserSpace:
    user_space_id: int
    user_id: int
    name: str
    storage: dict[str, Any]
    sealed_credential: bytes | None = field(repr=False)
    root_path: str
    state: str
    create_time: datetime
    latency_ms: float | None = None


@dataclass(frozen=True)
class BlockRecord:
    index: int
    user_space_id: int
    key: str


@dataclass(frozen=True)
class LayoutRecord:
    """One stored, immutable run of bytes: the blocks of one upload or part."""

    layout_id: int
    policy: Redundancy
    size: int
    segment_size: int
    chunk_len: int
    wrapped_key: bytes = field(repr=False)
    blocks: tuple[BlockRecord, ...]


@dataclass(frozen=True)
class ObjectContent:
    """An object and the layouts that make up its bytes, in order."""

    info: ObjectInfo
    parts: tuple[tuple[int, LayoutRecord], ...]  # (offset in object, layout)


@dataclass(frozen=True)
class StagedLayout:
    """Blocks written for an upload but not yet committed to an object."""

    layout_id: int
    size: int
    sha256: str
    md5: str
    segment_size: int
    chunk_len: int


@dataclass
class TransferProgress:
    files_total: int = 0
    files_done: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    bytes_total: int = 0
    bytes_done: int = 0


@dataclass(frozen=True)
class TransferTask:
    """A sync, import or export task as stored; ``spec`` is the normalised request."""

    task_id: int
    user_id: int
    kind: str
    spec: dict[str, Any]
    state: str
    run_no: int
    run_open: bool
    progress: TransferProgress
    last_error: str | None
    result: dict[str, Any] | None
    create_time: datetime
    last_run_time: datetime | None
    last_finish_time: datetime | None
    next_run_time: datetime | None
    lease_owner: str | None
    lease_until: datetime | None


@dataclass(frozen=True)
class FileRecord:
    """What a task last did with one file for one destination."""

    src_size: int
    src_mtime: float
    run_no: int
    state: str
    error: str | None = None
