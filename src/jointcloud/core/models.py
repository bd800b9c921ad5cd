"""Domain records passed between ``meta`` repositories, services and protocols."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from jointcloud.redundancy.policy import Redundancy


class SpaceState(StrEnum):
    """A user space's state: ``Normal`` receives blocks; health probes move a
    failing one to ``Unavailable`` and back; ``Draining`` is its owner's
    decision (its blocks move away, then it can be deleted)."""

    NORMAL = "Normal"
    UNAVAILABLE = "Unavailable"
    DRAINING = "Draining"


class TaskKind(StrEnum):
    """What a transfer task does."""

    SYNC = "sync"
    IMPORT = "import"
    EXPORT = "export"


class TaskState(StrEnum):
    """A transfer task's state: ``pending`` waits for its next run (or its
    window), ``running`` has a run open, a finished run leaves ``succeeded``
    or ``failed`` (a periodic task runs again), ``cancelled`` is final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskMode(StrEnum):
    """``full`` copies every selected file; ``diff`` skips those a destination
    already holds unchanged (see ``Compare``)."""

    FULL = "full"
    DIFF = "diff"


class Compare(StrEnum):
    """How ``diff`` decides that a destination's file is unchanged."""

    SIZE_MTIME = "sizeMtime"
    HASH = "hash"


class FileState(StrEnum):
    """What a task last did with one file for one destination."""

    DONE = "done"
    # Done, but the source's modification time lay too close to the run's
    # start to prove it unchanged later (engine.RACY_SLACK): compared by
    # bytes at the next diff run.
    RECENT = "recent"
    FAILED = "failed"


class ChecksumAlgorithm(StrEnum):
    """Additional checksums a client may supply and get back (S3 names)."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"


@dataclass(frozen=True)
class ObjectMeta:
    """What a client sets with an object and gets back with it. ``None``: not
    set. Limits (checked in core): user metadata 2 KiB (names + values, UTF-8,
    as S3), at most 10 tags (keys ≤ 128, values ≤ 256 characters)."""

    content_type: str | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    expires: str | None = None
    content_language: str | None = None
    # Where a website endpoint would redirect a read of the object (S3
    # keeps it; nothing here serves websites, so it is only stored).
    website_redirect_location: str | None = None
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


NO_META = ObjectMeta()


@dataclass(frozen=True)
class User:
    user_id: int
    name: str


@dataclass(frozen=True)
class UserRecord:
    """A user as the operator sees it."""

    user_id: int
    name: str
    disabled: bool
    create_time: datetime
    key_count: int


@dataclass(frozen=True)
class UserKey:
    """A plain user key as listed: never the key itself, only its first
    characters (``hint``) to tell keys apart."""

    key_id: int
    user_id: int
    name: str
    hint: str
    create_time: datetime


@dataclass(frozen=True)
class ProjectKey:
    """A macaroon API key of a project (a JCS bucket), as listed."""

    key_id: int
    user_id: int
    bucket_id: int
    name: str
    head: bytes
    create_time: datetime


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
    # The policy uploads get (its own, else its bucket's, else none), when
    # the lookup that made this record read the bucket too; else None.
    upload_policy: Redundancy | None = field(default=None, compare=False)


class ContentHash(NamedTuple):
    """SHA-256 of an object's content (lower-case hex), or for a multipart
    object the SHA-256 of its parts' SHA-256 digests (``composite``). Empty
    ``sha256``: not known yet (an upload's placeholder). How a protocol spells
    it is the protocol's business (JCS: ``Full…``/``Comp…``). A tuple: a
    listing makes one per object, and a tuple costs a third of a frozen
    dataclass to make."""

    sha256: str
    composite: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    object_id: int
    package_id: int
    path: str
    size: int
    file_hash: ContentHash
    etag: str
    redundancy: Redundancy
    create_time: datetime
    update_time: datetime
    # What the client set with the object (content headers, user metadata,
    # tags) and the additional checksums stored with it (base64, as S3).
    # Left out of the hash: mappings are not hashable.
    meta: ObjectMeta = field(default=NO_META, hash=False)
    checksums: Mapping[ChecksumAlgorithm, str] = field(default_factory=dict, hash=False)


class ObjectEntry(NamedTuple):
    """An object as a JCS listing shows it: identity, size, content hash,
    policy and times; no metadata or checksums to decode (a listing of 1,000
    keys makes 1,000 of these)."""

    object_id: int
    package_id: int
    path: str
    size: int
    file_hash: ContentHash
    redundancy: Redundancy
    create_time: datetime
    update_time: datetime

    @classmethod
    def of(cls, info: ObjectInfo) -> ObjectEntry:
        return cls(
            info.object_id,
            info.package_id,
            info.path,
            info.size,
            info.file_hash,
            info.redundancy,
            info.create_time,
            info.update_time,
        )


class ListedObject(NamedTuple):
    """An object as a listing shows it: no policy, metadata or hashes to
    decode (a listing of 1,000 keys makes 1,000 of these)."""

    path: str
    size: int
    etag: str
    update_time: datetime
    checksum_algorithms: tuple[ChecksumAlgorithm, ...]  # those stored with it


@dataclass(frozen=True)
class UserSpace:
    user_space_id: int
    user_id: int
    name: str
    storage: dict[str, Any]
    sealed_credential: bytes | None = field(repr=False)
    root_path: str
    state: SpaceState  # the database's strings are converted in __post_init__
    create_time: datetime
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        # The database hands back plain strings; an unknown one fails here.
        object.__setattr__(self, "state", SpaceState(self.state))


@dataclass(frozen=True)
class BlockRecord:
    index: int
    user_space_id: int
    key: str


# How scrub and fsck name the one block of an inline layout (it has no space).
INLINE_KEY = "(inline in the metadata database)"


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
    # The one sealed block of a small object, kept in the metadata database
    # (then ``blocks`` is empty and ``policy`` is none).
    inline: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ObjectContent:
    """An object and the layouts that make up its bytes, in order."""

    info: ObjectInfo
    parts: tuple[tuple[int, LayoutRecord], ...]  # (offset in object, layout)
    # Each part's own checksums (an object completed from uploaded parts;
    # empty where none were kept), in the order of ``parts``.
    part_checksums: tuple[Mapping[ChecksumAlgorithm, str], ...] = ()


@dataclass(frozen=True)
class StagedLayout:
    """Blocks written for an upload but not yet committed to an object."""

    layout_id: int
    size: int
    sha256: str
    md5: str
    segment_size: int
    chunk_len: int
    # The additional checksums asked for when it was written (base64).
    checksums: Mapping[ChecksumAlgorithm, str] = field(default_factory=dict, hash=False)
    # Inline (small) content: no row exists yet, ``layout_id`` is a negative
    # stand-in until the commit inserts the layout with its sealed block.
    inline: bytes | None = field(default=None, repr=False, hash=False)
    wrapped_key: bytes = field(default=b"", repr=False, hash=False)
    # Where its blocks were written: deleted by ``BlockStore.discard`` even
    # when the rows are gone (GC took a layout whose writer lost its lease).
    blocks: tuple[BlockRecord, ...] = field(default=(), repr=False, hash=False)


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
    kind: TaskKind
    spec: dict[str, Any]
    state: TaskState
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TaskKind(self.kind))
        object.__setattr__(self, "state", TaskState(self.state))


@dataclass(frozen=True)
class FileRecord:
    """What a task last did with one file for one destination."""

    src_size: int
    src_mtime: float
    run_no: int
    state: FileState
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", FileState(self.state))


def _wildcard_match(pattern: str, value: str) -> bool:
    """``pattern`` with at most one ``*`` (any run of characters)."""
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


@dataclass(frozen=True)
class CorsRule:
    """One cross-origin rule of a package: which origins may use which
    methods with which request headers, what response headers they may read
    and how long a browser may cache the answer. Origin and header patterns
    hold at most one ``*``; methods are upper-case HTTP methods."""

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    rule_id: str | None = None

    def allows_origin(self, origin: str) -> bool:
        return any(_wildcard_match(p, origin) for p in self.allowed_origins)

    def allows_headers(self, headers: Iterable[str]) -> bool:
        """Every header named (case-insensitively) matches an allowed one.
        Plain names are looked up, only the patterns with a ``*`` are tried
        one by one: a preflight costs its headers times the rule's wildcards,
        not times every name the rule lists."""
        names = {p.lower() for p in self.allowed_headers if "*" not in p}
        wildcards = [p.lower() for p in self.allowed_headers if "*" in p]
        for header in headers:
            h = header.lower()
            if h not in names and not any(_wildcard_match(p, h) for p in wildcards):
                return False
        return True

    def matches(self, origin: str, method: str, headers: Iterable[str] = ()) -> bool:
        return (
            method in self.allowed_methods
            and self.allows_origin(origin)
            and self.allows_headers(headers)
        )

    @property
    def any_origin(self) -> bool:
        return "*" in self.allowed_origins
