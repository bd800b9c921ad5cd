"""Validation of names and object paths (shared by every protocol)."""

from __future__ import annotations

import re

from jointcloud.errors import BadArgument

MAX_PATH = 1024
_NAME = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")


def object_path(raw: str, field: str = "path") -> str:
    """Normalise an object path: ``\\`` → ``/``; reject ``..``, ``.``, empty
    segments, NUL and control characters, naming the field."""
    path = raw.replace("\\", "/").lstrip("/")
    if not path:
        raise BadArgument(f"{field} must not be empty")
    if len(path.encode()) > MAX_PATH:
        raise BadArgument(f"{field} is longer than {MAX_PATH} bytes")
    if any(ord(c) < 0x20 for c in path):
        raise BadArgument(f"{field} must not contain NUL or control characters")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise BadArgument(f"{field} must not contain empty, '.' or '..' segments: {raw!r}")
    return path


def path_prefix(raw: str, field: str = "path") -> str:
    """A listing prefix: like a path, but may be empty or end with '/', and its
    last segment may be cut short ('.' and '..' begin names like '.git')."""
    if raw == "":
        return ""
    trailing = raw.endswith("/")
    body = raw.rstrip("/")
    if not body:
        return ""
    if not trailing:
        head, _, last = body.replace("\\", "/").rpartition("/")
        if last in (".", ".."):
            return (object_path(head, field) + "/" if head.strip("/") else "") + last
    return object_path(body, field) + ("/" if trailing else "")


def entity_name(raw: object, field: str) -> str:
    if not isinstance(raw, str) or not _NAME.match(raw) or raw.strip() != raw:
        raise BadArgument(
            f"{field} must be 1-255 characters without '/', '\\', control characters "
            "or surrounding spaces"
        )
    return raw
