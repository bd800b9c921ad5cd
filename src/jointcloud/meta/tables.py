"""Table definitions used by the repositories (the schema itself is owned by
the Alembic migrations; a test checks the two agree)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
# Every table whose id users or other rows refer to sets sqlite_autoincrement:
# without it SQLite hands the highest id out again once its row is deleted (a
# deleted package's id would name the next package, and old task records with
# it). PostgreSQL ids come from sequences (BIGSERIAL), which never go back.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Byte-wise ordering of object paths on every database (listing order, paging).
PathType = String(1024).with_variant(String(1024, collation="C"), "postgresql")

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # A disabled user's keys, project keys and credentials stop working (0008).
    Column("disabled", Boolean, nullable=False, server_default=false()),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # A user's keys (their list, ``jcs user ls``'s count): 0021.
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("name", String(255), nullable=True),  # 0008
    Column("hint", String(16), nullable=True),  # 0008: the key's first characters
    sqlite_autoincrement=True,
)

# Macaroon API keys of a project (0008): the head names the key, the secret
# (sealed by the master key) roots its HMAC chain.
project_keys = Table(
    "project_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # A project's keys (their list, the cascade of a bucket's delete): 0021.
    Column(
        "bucket_id",
        Id,
        ForeignKey("buckets.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", String(255), nullable=False),
    Column("head", LargeBinary, nullable=False, unique=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

# A revoked derived key is remembered by the tail of its chain: every key
# restricted from it carries that tail in its own chain (0008).
revoked_tails = Table(
    "revoked_tails",
    metadata,
    Column("tail", LargeBinary, primary_key=True),
    Column(
        "project_key_id",
        Id,
        ForeignKey("project_keys.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
)

# S3 credentials of the auth service (0008): found by SHA-256 of the access
# key id; secret and grant sealed under a key derived from the id itself.
auth_records = Table(
    "auth_records",
    metadata,
    Column("key_hash", LargeBinary, primary_key=True),
    Column(
        "project_key_id",
        Id,
        ForeignKey("project_keys.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("encrypted_secret_key", LargeBinary, nullable=False),
    Column("encrypted_access_grant", LargeBinary, nullable=False),
    Column("public", Boolean, nullable=False),
    # GC drops expired credentials every pass (0021).
    Column("expires_at", DateTime(timezone=True), nullable=True, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

user_spaces = Table(
    "user_spaces",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("storage", Text, nullable=False),
    Column("credential", LargeBinary, nullable=True),
    Column("root_path", String(1024), nullable=False),
    Column("state", String(32), nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("user_id", "name", name="uq_user_spaces_user_name"),
    sqlite_autoincrement=True,
)

buckets = Table(
    "buckets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("project_id", String(36), nullable=False, unique=True),
    Column("redundancy", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # When the default policy was last set: objects written before it are
    # re-encoded to it (unless their package has its own policy).
    Column("policy_changed_at", DateTime(timezone=True), nullable=True),
    # Fixed by the first access grant registered for the project (0008).
    Column("passphrase_verifier", LargeBinary, nullable=True),
    UniqueConstraint("user_id", "name", name="uq_buckets_user_name"),
    sqlite_autoincrement=True,
)

packages = Table(
    "packages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("bucket_id", Id, ForeignKey("buckets.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("redundancy", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # When the policy was last set: objects written before it are re-encoded.
    Column("policy_changed_at", DateTime(timezone=True), nullable=True),
    Column("tags", Text, nullable=True),  # JSON object (migration 0006)
    Column("cors", Text, nullable=True),  # JSON list of CORS rules (migration 0009)
    UniqueConstraint("bucket_id", "name", name="uq_packages_bucket_name"),
    # CORS preflights carry no credentials: packages are found by name alone.
    Index("ix_packages_name", "name"),
    sqlite_autoincrement=True,
)

objects = Table(
    "objects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("package_id", Id, ForeignKey("packages.id"), nullable=False),
    Column("path", PathType, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_hash", String(80), nullable=False),
    Column("etag", String(48), nullable=False),
    Column("redundancy", Text, nullable=False),
    # False while a multipart upload creates the object: it is not visible yet.
    Column("committed", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # What S3 and the gateway keep with an object (migration 0006); NULL: not set.
    Column("content_type", String(255), nullable=True),
    Column("content_encoding", String(255), nullable=True),
    Column("cache_control", String(255), nullable=True),
    Column("content_disposition", String(1024), nullable=True),
    Column("expires", String(64), nullable=True),
    Column("user_metadata", Text, nullable=True),  # JSON object
    Column("tags", Text, nullable=True),  # JSON object
    Column("checksums", Text, nullable=True),  # JSON object: algorithm -> base64
    # Migration 0013: two more content fields S3 keeps; NULL: not set.
    Column("content_language", String(255), nullable=True),
    Column("website_redirect_location", String(2048), nullable=True),
    UniqueConstraint("package_id", "path", name="uq_objects_package_path"),
    sqlite_autoincrement=True,
)

# A layout is immutable once live; objects (and clones of them) reference it.
layouts = Table(
    "layouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),  # pending | live
    Column("policy", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("segment_size", BigInteger, nullable=False),
    Column("chunk_len", BigInteger, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Set when the last reference went away; GC deletes after a safety delay.
    Column("released_at", DateTime(timezone=True), nullable=True, index=True),
    # A small object's one sealed block, kept here instead of in a space
    # (0010); such a layout has no rows in ``blocks``.
    Column("inline_data", LargeBinary, nullable=True),
    # GC's pending layouts of crashed uploads (0020): without it each pass
    # read the whole table, inline blocks included.
    Index(
        "ix_layouts_pending_created_at",
        "created_at",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    sqlite_autoincrement=True,
)

blocks = Table(
    "blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("layout_id", Id, ForeignKey("layouts.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("user_space_id", Id, ForeignKey("user_spaces.id"), nullable=False),
    Column("key", String(1024), nullable=False),
    # A layout's blocks in order (0024): every read of an object, unsorted.
    Index("ix_blocks_layout_idx", "layout_id", "idx"),
    # A space's blocks in layout order (0023): a drain's pages past a cursor.
    Index("ix_blocks_space_layout", "user_space_id", "layout_id", "idx"),
    sqlite_autoincrement=True,
)

object_parts = Table(
    "object_parts",
    metadata,
    Column("object_id", Id, ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("layout_id", Id, ForeignKey("layouts.id"), nullable=False, index=True),
    Column("offset", BigInteger, nullable=False),
    # The part's own checksums (JSON: algorithm -> base64) as uploaded, for
    # an object completed from parts (0012); NULL: none kept.
    Column("checksums", Text, nullable=True),
)

# Multipart uploads in flight (S3 and the JCS three-step upload): several may
# target one path; each has an opaque random ``upload_id`` and keeps what the
# object gets on completion (its policy, metadata and checksum algorithm).
# ``package_id`` has no foreign key on purpose: deleting a package leaves its
# uploads behind, and GC drops them (and releases their parts) as abandoned.
# ``object_id``: the invisible placeholder (or existing) object of a JCS upload.
uploads = Table(
    "uploads",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("upload_id", String(128), nullable=False, unique=True),
    Column("package_id", Id, nullable=False),
    Column("path", PathType, nullable=False),
    Column("redundancy", Text, nullable=False),
    Column("content_type", String(255), nullable=True),
    Column("content_encoding", String(255), nullable=True),
    Column("cache_control", String(255), nullable=True),
    Column("content_disposition", String(1024), nullable=True),
    Column("expires", String(64), nullable=True),
    Column("user_metadata", Text, nullable=True),  # JSON object
    Column("tags", Text, nullable=True),  # JSON object
    Column("checksum_algorithm", String(16), nullable=True),
    Column("object_id", Id, ForeignKey("objects.id"), nullable=True, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    # "FULL_OBJECT": the object's CRC is of all its bytes (migration 0011);
    # NULL: composite, a checksum of the parts' checksums.
    Column("checksum_type", String(16), nullable=True),
    Column("content_language", String(255), nullable=True),  # migration 0013
    Column("website_redirect_location", String(2048), nullable=True),
    Index("ix_uploads_package_path", "package_id", "path"),
    sqlite_autoincrement=True,
)

# The parts of an upload; each part is its own layout, referenced from here
# until the upload completes (then the object references it) or goes.
multipart_parts = Table(
    "multipart_parts",
    metadata,
    Column("upload_row_id", Id, ForeignKey("uploads.id"), primary_key=True),
    Column("part_number", Integer, primary_key=True),
    Column("layout_id", Id, ForeignKey("layouts.id"), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("checksums", Text, nullable=True),  # JSON object: algorithm -> base64
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per background job: durable state, progress and the lease that keeps
# two server processes on one database from running the same job at once.
jobs = Table(
    "jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("state", String(16), nullable=False),  # idle | running
    Column("progress_done", BigInteger, nullable=False),
    Column("progress_total", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Column("cursor", Text, nullable=True),  # job-specific resume point (JSON)
    Column("runs", BigInteger, nullable=False),
    Column("last_started", DateTime(timezone=True), nullable=True),
    Column("last_finished", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("next_run", DateTime(timezone=True), nullable=True),
)

# The GC delay each running server process counts on (0014): its readers
# of released layouts and its writers of pending ones are safe from GC for
# that long. GC in ``jcs serve`` waits the longest a live process announced.
gc_holds = Table(
    "gc_holds",
    metadata,
    Column("owner", String(128), primary_key=True),  # as a job lease's owner
    Column("delay_seconds", Float, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# Blocks nothing references that could not be deleted when they were let go
# (their cloud unreachable or Unavailable): GC deletes them once the space
# answers (0015). Block keys are never reused, so a late delete is safe.
stray_blocks = Table(
    "stray_blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "user_space_id",
        Id,
        ForeignKey("user_spaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("key", String(1024), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    # A debt is forgiven by (space, key) once its delete succeeded: every
    # drained or repaired block owes one in its swap's transaction (0017).
    Index("ix_stray_blocks_space_key", "user_space_id", "key"),
    sqlite_autoincrement=True,
)

# Layouts that need their redundancy restored (missing, corrupt, or on a
# draining space), fed by degraded reads, scrub, health and fsck.
repair_queue = Table(
    "repair_queue",
    metadata,
    Column("layout_id", Id, ForeignKey("layouts.id", ondelete="CASCADE"), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False, index=True),
    Column("last_error", Text, nullable=True),
)

# Transfer tasks (sync, import, export): the request, the schedule, the lease of
# the process running it and the counters of the current run.
transfer_tasks = Table(
    "transfer_tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # sync | import | export
    Column("spec", Text, nullable=False),  # the normalised request (JSON)
    # Open runs are found by it, not among every task kept (0022).
    Column("state", String(16), nullable=False, index=True),
    Column("run_no", Integer, nullable=False),
    Column("run_open", Boolean, nullable=False),  # a run started and not finished
    Column("files_total", BigInteger, nullable=False),
    Column("files_done", BigInteger, nullable=False),
    Column("files_failed", BigInteger, nullable=False),
    Column("files_skipped", BigInteger, nullable=False),
    Column("bytes_total", BigInteger, nullable=False),
    Column("bytes_done", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("result", Text, nullable=True),  # JSON answer of a finished import/export
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
    Column("last_finish_at", DateTime(timezone=True), nullable=True),
    Column("next_run_at", DateTime(timezone=True), nullable=True, index=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    sqlite_autoincrement=True,
)

# One row per file and destination a task has handled: what the source was
# when it was copied (diff mode compares against it) and in which run (a
# resumed run skips what it already did).
transfer_files = Table(
    "transfer_files",
    metadata,
    Column(
        "task_id",
        Id,
        ForeignKey("transfer_tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("dest", Integer, primary_key=True),
    Column("path", PathType, primary_key=True),
    Column("src_size", BigInteger, nullable=False),
    Column("src_mtime", Float, nullable=False),
    Column("run_no", Integer, nullable=False),
    Column("state", String(8), nullable=False),  # done | recent | failed
    Column("error", Text, nullable=True),
)
