"""Buckets, packages and objects (the namespace), scoped by owner.

One module per concept: ``buckets`` (buckets and packages, their tags and
CORS rules), ``reads`` (an object's row, or all that reading its bytes
needs), ``listings`` (a package's objects in path order) and ``writes``
(commits, parts, placeholders, moves, deletes). Callers use the names
re-exported here (``catalog.open_by_path``), so a test that patches one of
them on this package reaches every caller that looks it up through it.
"""

from __future__ import annotations

from jointcloud.meta.catalog.buckets import (
    FoundPackage,
    cors_by_package_name,
    create_bucket,
    create_package,
    delete_bucket,
    delete_package,
    find_package,
    get_bucket,
    get_bucket_by_name,
    get_package,
    get_package_by_name,
    get_package_cors,
    get_package_tags,
    list_buckets,
    list_packages,
    package_names,
    package_object_count,
    package_policy,
    set_bucket_policy,
    set_package_cors,
    set_package_policy,
    set_package_tags,
)
from jointcloud.meta.catalog.listings import (
    ENTRY_COLUMNS,
    LISTED_COLUMNS,
    list_entries,
    list_listed,
    list_objects,
)
from jointcloud.meta.catalog.reads import (
    PartRef,
    get_object,
    get_object_by_path,
    objects_at_paths,
    objects_by_ids,
    open_by_id,
    open_by_path,
    open_span,
    part_refs,
)
from jointcloud.meta.catalog.writes import (
    FEW_OVERWRITES,
    NewContent,
    abandon_upload,
    clone_object,
    commit_object,
    commit_objects,
    create_placeholder,
    delete_objects,
    lock_package_paths,
    move_object,
    set_object_tags,
    set_parts,
)

__all__ = [
    "ENTRY_COLUMNS",
    "FEW_OVERWRITES",
    "LISTED_COLUMNS",
    "FoundPackage",
    "NewContent",
    "PartRef",
    "abandon_upload",
    "clone_object",
    "commit_object",
    "commit_objects",
    "cors_by_package_name",
    "create_bucket",
    "create_package",
    "create_placeholder",
    "delete_bucket",
    "delete_objects",
    "delete_package",
    "find_package",
    "get_bucket",
    "get_bucket_by_name",
    "get_object",
    "get_object_by_path",
    "get_package",
    "get_package_by_name",
    "get_package_cors",
    "get_package_tags",
    "list_buckets",
    "list_entries",
    "list_listed",
    "list_objects",
    "list_packages",
    "lock_package_paths",
    "move_object",
    "objects_at_paths",
    "objects_by_ids",
    "open_by_id",
    "open_by_path",
    "open_span",
    "package_names",
    "package_object_count",
    "package_policy",
    "part_refs",
    "set_bucket_policy",
    "set_object_tags",
    "set_package_cors",
    "set_package_policy",
    "set_package_tags",
    "set_parts",
]
