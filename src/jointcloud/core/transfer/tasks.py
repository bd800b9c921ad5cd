"""A transfer task's stored request and result as typed records.

The ``spec`` and ``result`` columns hold JSON whose keys were fixed by the
first release (camelCase, as the v1 API sent them): existing rows must keep
working, so the keys never change. This module is the one place that reads
and writes that form; everything else sees ``SyncSpec``/``ImportSpec``/
``ExportSpec`` and ``TaskResult``, and each protocol spells them its way
(``api/jcs/transfers.py`` for the v1 API).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jointcloud.core.models import Compare, TaskKind, TaskMode
from jointcloud.core.transfer.commands import SyncDest
from jointcloud.core.transfer.spec import TransferFilter, Trigger


@dataclass(frozen=True)
class SyncSpec:
    src_space_id: int
    src_path: str
    dests: tuple[SyncDest, ...]
    mode: TaskMode = TaskMode.FULL
    compare: Compare = Compare.SIZE_MTIME
    trigger: Trigger = field(default_factory=lambda: Trigger("once"))
    filter: TransferFilter = field(default_factory=TransferFilter)
    delete_source: bool = False


@dataclass(frozen=True)
class ImportSpec:
    src_space_id: int
    src_path: str
    bucket_id: int
    name: str
    package_id: int
    affinity: int | None = None
    filter: TransferFilter = field(default_factory=TransferFilter)


@dataclass(frozen=True)
class ExportSpec:
    package_id: int
    space_id: int
    root_path: str
    filter: TransferFilter = field(default_factory=TransferFilter)


TaskSpec = SyncSpec | ImportSpec | ExportSpec


@dataclass(frozen=True)
class TaskResult:
    """What a finished import or export did."""

    object_count: int
    total_size: int
    package_id: int | None = None  # the package an import filled


# -- the stored form -------------------------------------------------------------


def spec_to_json(spec: TaskSpec) -> dict[str, Any]:
    if isinstance(spec, SyncSpec):
        return {
            "srcUserSpaceID": spec.src_space_id,
            "srcPath": spec.src_path,
            "dests": [{"userSpaceID": d.space_id, "path": d.path} for d in spec.dests],
            "mode": spec.mode,
            "compare": spec.compare,
            "trigger": spec.trigger.to_json(),
            "filter": spec.filter.to_json(),
            "deleteSource": spec.delete_source,
        }
    out: dict[str, Any]
    if isinstance(spec, ImportSpec):
        out = {
            "srcUserSpaceID": spec.src_space_id,
            "srcPath": spec.src_path,
            "bucketID": spec.bucket_id,
            "name": spec.name,
            "packageID": spec.package_id,
            "affinity": spec.affinity,
        }
    else:
        out = {
            "packageID": spec.package_id,
            "userSpaceID": spec.space_id,
            "rootPath": spec.root_path,
        }
    if spec.filter != TransferFilter():
        out["filter"] = spec.filter.to_json()
    return out


def spaces_of(stored: dict[str, Any]) -> set[int]:
    """The user spaces whose files a stored spec reads or writes (the
    affinity of an import only places blocks, which guard themselves)."""
    ids = {stored.get("srcUserSpaceID"), stored.get("userSpaceID")}
    ids.update(d.get("userSpaceID") for d in stored.get("dests") or () if isinstance(d, dict))
    return {i for i in ids if isinstance(i, int)}


def spec_from_json(kind: TaskKind, stored: dict[str, Any], *, strict: bool = True) -> TaskSpec:
    """A spec as stored by ``spec_to_json`` (or by an earlier release: keys
    added since have their defaults). ``strict=False`` (to show a task)
    accepts a trigger that breaks a bound added later; running it does not."""
    select = TransferFilter.from_json(stored.get("filter"))
    if kind == TaskKind.SYNC:
        return SyncSpec(
            stored["srcUserSpaceID"],
            stored.get("srcPath", ""),
            tuple(SyncDest(d["userSpaceID"], d.get("path", "")) for d in stored.get("dests", [])),
            TaskMode(stored.get("mode", TaskMode.FULL)),
            Compare(stored.get("compare", Compare.SIZE_MTIME)),
            Trigger.from_json(stored.get("trigger"), strict=strict),
            select,
            bool(stored.get("deleteSource")),
        )
    if kind == TaskKind.IMPORT:
        return ImportSpec(
            stored["srcUserSpaceID"],
            stored.get("srcPath", ""),
            stored["bucketID"],
            stored["name"],
            stored["packageID"],
            stored.get("affinity"),
            select,
        )
    return ExportSpec(
        stored["packageID"], stored["userSpaceID"], stored.get("rootPath", ""), select
    )


def result_to_json(result: TaskResult) -> dict[str, Any]:
    out: dict[str, Any] = {"objectCount": result.object_count, "totalSize": result.total_size}
    if result.package_id is not None:
        out["packageID"] = result.package_id
    return out


def result_from_json(stored: dict[str, Any] | None) -> TaskResult | None:
    if stored is None:
        return None
    return TaskResult(
        stored.get("objectCount", 0), stored.get("totalSize", 0), stored.get("packageID")
    )
