"""The v1 API's transfer requests (§4.6, §4.7, §5) parsed into the core's
typed commands, and transfer tasks serialized back.

Field names, types and the "must be a positive integer" style messages are
the protocol's and live here; rules about the domain (paths, interval and
list bounds, windows, time zones, block areas) are the core's, which is
handed the JCS name of each field (``jcs_label``) so that every message
names the field as the client sent it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from jointcloud.api.jcs import views
from jointcloud.core.buckets import optional_policy
from jointcloud.core.models import Compare, TaskMode
from jointcloud.core.paths import entity_name
from jointcloud.core.transfer.commands import (
    CreateSyncTask,
    ExportPackage,
    ImportPackage,
    SyncDest,
)
from jointcloud.core.transfer.service import MAX_DESTS, TaskView
from jointcloud.core.transfer.spec import (
    INT64_MAX,
    TransferFilter,
    Trigger,
    check_interval,
    extensions,
    path_patterns,
    shown,
    time_of_day,
    transfer_path,
)
from jointcloud.core.transfer.tasks import ImportSpec, SyncSpec, TaskResult, TaskSpec
from jointcloud.errors import BadArgument

_NAMES = {"src_path": "srcPath", "root_path": "rootPath"}
_DEST = re.compile(r"dest\[(\d+)\](.*)")


def jcs_label(name: str) -> str:
    """The JCS name of a core field: ``dest[1].path`` → ``dests[1].path``."""
    if m := _DEST.fullmatch(name):
        return f"dests[{m.group(1)}]{m.group(2)}"
    return _NAMES.get(name, name)


# -- fields --------------------------------------------------------------------


def int_field(
    body: dict[str, Any], key: str, field: str, minimum: int = 0, maximum: int | None = INT64_MAX
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadArgument(f"{field} must be an integer ≥ {minimum}")
    if maximum is not None and value > maximum:
        raise BadArgument(f"{field} must be at most {maximum}, got {value}")
    return value


def id_field(body: dict[str, Any], key: str, field: str | None = None) -> int:
    """A positive int64 ID given as a JSON integer (not a string, as every
    other endpoint), named ``field`` (default ``key``) in the message."""
    name = field or key
    value = body.get(key)
    if value is None:
        raise BadArgument(f"{name} is required and must be a positive integer")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadArgument(f"{name} must be a positive integer, got {shown(value)}")
    if value > INT64_MAX:
        raise BadArgument(f"{name} must be at most {INT64_MAX} (int64), got {value}")
    return value


def bool_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadArgument(f"{key} must be true or false")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadArgument(f"filter.{key} must be a list of non-empty strings")
    return list(value)


_FILTER_KEYS = {"minSize", "maxSize", "includeExt", "excludeExt", "includePaths", "excludePaths"}


def parse_filter(raw: object) -> TransferFilter:
    """``filter``: ``{minSize, maxSize, includeExt, excludeExt, includePaths,
    excludePaths}``, every key optional."""
    if raw is None:
        return TransferFilter()
    if not isinstance(raw, dict):
        raise BadArgument("filter must be an object")
    unknown = sorted(set(raw) - _FILTER_KEYS)
    if unknown:
        raise BadArgument(f"filter has unknown fields {unknown}; allowed: {sorted(_FILTER_KEYS)}")
    select = TransferFilter(
        int_field(raw, "minSize", "filter.minSize"), int_field(raw, "maxSize", "filter.maxSize")
    )
    select.check_sizes("filter.minSize", "filter.maxSize")
    return TransferFilter(
        select.min_size,
        select.max_size,
        extensions(_str_list(raw, "includeExt"), "filter.includeExt"),
        extensions(_str_list(raw, "excludeExt"), "filter.excludeExt"),
        path_patterns(_str_list(raw, "includePaths"), "filter.includePaths"),
        path_patterns(_str_list(raw, "excludePaths"), "filter.excludePaths"),
    )


def parse_trigger(raw: object) -> Trigger:
    """``trigger``: ``{type: once}``, ``{type: interval, seconds}`` or
    ``{type: window, start, end, timezone}``; absent is ``once``."""
    if raw is None:
        return Trigger("once")
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadArgument("trigger must be an object with a 'type': once, interval or window")
    kind = raw["type"]
    if kind == "once":
        return Trigger("once")
    if kind == "interval":
        seconds = int_field(raw, "seconds", "trigger.seconds", minimum=1, maximum=None)
        if seconds is None:
            raise BadArgument("trigger.seconds is required for an interval trigger")
        return Trigger("interval", seconds=check_interval(seconds, "trigger.seconds"))
    if kind == "window":
        start = time_of_day(raw.get("start"), "trigger.start")
        end = time_of_day(raw.get("end"), "trigger.end")
        fields = ("trigger.start", "trigger.end", "trigger.timezone")
        return Trigger.window(start, end, raw.get("timezone", "UTC"), fields)
    raise BadArgument(f"trigger.type must be once, interval or window, got {shown(kind)}")


def parse_mode(body: dict[str, Any]) -> tuple[TaskMode, Compare]:
    mode = body.get("mode", TaskMode.FULL)
    if mode not in tuple(TaskMode):  # by equality: an unhashable value is refused too
        raise BadArgument(f"mode must be 'full' or 'diff', got {shown(mode)}")
    compare = body.get("compare", Compare.SIZE_MTIME)
    if compare not in tuple(Compare):
        raise BadArgument(f"compare must be 'sizeMtime' or 'hash', got {shown(compare)}")
    return TaskMode(mode), Compare(compare)


# -- requests ------------------------------------------------------------------


def sync_command(body: dict[str, Any]) -> CreateSyncTask:
    """``spaceSync/createTask``."""
    src_id = id_field(body, "srcUserSpaceID")
    src_path = transfer_path(body.get("srcPath"), "srcPath")
    raw_dests = body.get("dests")
    if not isinstance(raw_dests, list) or not raw_dests:
        raise BadArgument("dests must list at least one destination {userSpaceID, path}")
    if len(raw_dests) > MAX_DESTS:
        raise BadArgument(f"dests lists {len(raw_dests)} destinations; at most {MAX_DESTS}")
    dests: list[SyncDest] = []
    for i, raw in enumerate(raw_dests):
        if not isinstance(raw, dict):
            raise BadArgument(f"dests[{i}] must be an object {{userSpaceID, path}}")
        dest_id = id_field(raw, "userSpaceID", f"dests[{i}].userSpaceID")
        dests.append(SyncDest(dest_id, transfer_path(raw.get("path"), f"dests[{i}].path")))
    mode, compare = parse_mode(body)
    return CreateSyncTask(
        src_id,
        src_path,
        tuple(dests),
        mode=mode,
        compare=compare,
        trigger=parse_trigger(body.get("trigger")),
        filter=parse_filter(body.get("filter")),
        delete_source=bool_field(body, "deleteSource"),
        label=jcs_label,
    )


def import_command(body: dict[str, Any]) -> ImportPackage:
    """``userSpace/createPackage``."""
    space_id = id_field(body, "userSpaceID")
    path = transfer_path(body.get("path"), "path")
    bucket_id = id_field(body, "bucketID")
    name = entity_name(body.get("name"), "name")
    redundancy = optional_policy(body.get("redundancy"))
    select = parse_filter(body.get("filter"))
    background = bool_field(body, "async")
    affinity = None if body.get("affinity") is None else id_field(body, "affinity")
    return ImportPackage(
        space_id,
        path,
        bucket_id,
        name,
        redundancy=redundancy,
        filter=select,
        background=background,
        affinity=affinity,
        label=jcs_label,
    )


def export_command(body: dict[str, Any]) -> ExportPackage:
    """``userSpace/downloadPackage``."""
    package_id = id_field(body, "packageID")
    space_id = id_field(body, "userSpaceID")
    root = transfer_path(body.get("rootPath"), "rootPath")
    return ExportPackage(
        package_id,
        space_id,
        root,
        filter=parse_filter(body.get("filter")),
        background=bool_field(body, "async"),
        label=jcs_label,
    )


def task_id(raw: object) -> int:
    """``taskID`` of getTask (a query parameter: digits arrive as an int)
    and cancelTask."""
    return id_field({"taskID": raw}, "taskID")


# -- answers -------------------------------------------------------------------


def _filter(select: TransferFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if select.min_size is not None:
        out["minSize"] = select.min_size
    if select.max_size is not None:
        out["maxSize"] = select.max_size
    for key, value in (
        ("includeExt", select.include_ext),
        ("excludeExt", select.exclude_ext),
        ("includePaths", select.include_paths),
        ("excludePaths", select.exclude_paths),
    ):
        if value:
            out[key] = list(value)
    return out


def _trigger(t: Trigger) -> dict[str, Any]:
    if t.type == "interval":
        return {"type": "interval", "seconds": t.seconds}
    if t.type == "window" and t.start is not None and t.end is not None:
        return {
            "type": "window",
            "start": t.start.strftime("%H:%M"),
            "end": t.end.strftime("%H:%M"),
            "timezone": t.timezone,
        }
    return {"type": "once"}


def _spec(spec: TaskSpec) -> dict[str, Any]:
    """A task's request fields, as the request that created it named them."""
    out: dict[str, Any]
    if isinstance(spec, SyncSpec):
        return {
            "srcUserSpaceID": spec.src_space_id,
            "srcPath": spec.src_path,
            "dests": [{"userSpaceID": d.space_id, "path": d.path} for d in spec.dests],
            "mode": str(spec.mode),
            "compare": str(spec.compare),
            "trigger": _trigger(spec.trigger),
            "filter": _filter(spec.filter),
            "deleteSource": spec.delete_source,
        }
    if isinstance(spec, ImportSpec):
        out = {
            "srcUserSpaceID": spec.src_space_id,
            "srcPath": spec.src_path,
            "bucketID": spec.bucket_id,
            "name": spec.name,
            "packageID": spec.package_id,
        }
        if spec.affinity is not None:
            out["affinity"] = spec.affinity
    else:
        out = {
            "packageID": spec.package_id,
            "userSpaceID": spec.space_id,
            "rootPath": spec.root_path,
        }
    if spec.filter != TransferFilter():
        out["filter"] = _filter(spec.filter)
    return out


def _result(result: TaskResult) -> dict[str, Any]:
    out: dict[str, Any] = {"objectCount": result.object_count, "totalSize": result.total_size}
    if result.package_id is not None:
        out["packageID"] = result.package_id
    return out


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else views.ts(value)


def task(view: TaskView) -> dict[str, Any]:
    """A transfer task: its request fields, then state, progress and times."""
    t, p = view.task, view.task.progress
    out: dict[str, Any] = {"taskID": t.task_id, "type": str(t.kind)}
    out.update(_spec(view.spec))
    out.update(
        {
            "state": str(t.state),
            "progress": {
                "filesTotal": p.files_total,
                "filesDone": p.files_done,
                "bytesTotal": p.bytes_total,
                "bytesDone": p.bytes_done,
                "filesFailed": p.files_failed,
                "filesSkipped": p.files_skipped,
            },
            "lastError": t.last_error,
            "failures": [{"path": path, "error": err} for path, err in view.failures],
            "createTime": views.ts(t.create_time),
            "lastRunTime": _opt_ts(t.last_run_time),
            "lastFinishTime": _opt_ts(t.last_finish_time),
            "nextRunTime": _opt_ts(t.next_run_time),
            "runs": t.run_no,
        }
    )
    if (result := view.result) is not None:
        out["result"] = _result(result)
    return out
