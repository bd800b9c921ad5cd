"""Typed commands of the transfer service (sync, import, export).

A protocol parses its request into one of these (the v1 API in
``api/jcs/transfers.py``); values are already of the right type and
normalised where the rule is purely about the value (a path, a filter, a
trigger). The service checks what needs the database or the spaces (the
spaces exist and are the caller's, no path is in a block area, a destination
is not inside its source, the filter selects something).

``label`` turns a domain field name (``src_path``, ``dest[1].path``,
``root_path``, ``affinity``...) into the name the client used, so that
messages raised by the service name the field as it was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jointcloud.core.models import Compare, TaskMode
from jointcloud.core.transfer.spec import TransferFilter, Trigger
from jointcloud.redundancy.policy import Redundancy

Label = Callable[[str], str]


def plain(name: str) -> str:
    """The default label: the domain name itself."""
    return name


@dataclass(frozen=True)
class SyncDest:
    space_id: int
    path: str


@dataclass(frozen=True)
class CreateSyncTask:
    """Copy ``src_path`` of one user space to one or more destinations,
    once, every N seconds or inside a daily window."""

    src_space_id: int
    src_path: str
    dests: tuple[SyncDest, ...]
    mode: TaskMode = TaskMode.FULL
    compare: Compare = Compare.SIZE_MTIME
    trigger: Trigger = field(default_factory=lambda: Trigger("once"))
    filter: TransferFilter = field(default_factory=TransferFilter)
    delete_source: bool = False
    label: Label = plain


@dataclass(frozen=True)
class ImportPackage:
    """Create package ``name`` in bucket ``bucket_id`` from the files under
    ``path`` of a user space."""

    space_id: int
    path: str
    bucket_id: int
    name: str
    redundancy: Redundancy | None = None
    filter: TransferFilter = field(default_factory=TransferFilter)
    background: bool = False  # always a task, even when small
    affinity: int | None = None  # a user space of the caller's to place blocks on
    label: Label = plain


@dataclass(frozen=True)
class ExportPackage:
    """Copy a package's objects under ``root_path`` of a user space."""

    package_id: int
    space_id: int
    root_path: str
    filter: TransferFilter = field(default_factory=TransferFilter)
    background: bool = False
    label: Label = plain
