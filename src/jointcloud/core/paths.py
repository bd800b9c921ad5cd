"""Validation of names and object paths (shared by every protocol).

The bounds every name and path obeys (docs/api.md, "Limits"): no NUL or
other control character (C0, DEL, C1), no lone surrogate, no segment (or
name) longer than 255 bytes of UTF-8, no path longer than 1024 bytes, and
no ``.`` or ``..`` as a name or segment. Each refusal is a ``BadArgument``
that names the field.
"""

from __future__ import annotations

import re

from jointcloud.errors import BadArgument

MAX_PATH = 1024  # bytes of UTF-8
MAX_SEGMENT = 255  # bytes of UTF-8: a file name on every common file system
# C0 controls (NUL included), DEL, C1 controls, lone surrogates (which
# JSON can carry but UTF-8 cannot), and the noncharacters U+FFFE and U+FFFF
# (which XML 1.0 cannot carry: a listing holding one would not parse).
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# An object key (S3, the gateway) may hold the controls AWS takes: the
# ASCII ones but NUL (botocore's own suite puts "foo\x08", the AWS CLI's
# "foo\r.txt"). AWS refuses the C1 controls U+0080-U+009F ("Couldn't parse
# the specified URI.", ceph's s3-tests), and so does this. NUL, lone
# surrogates and the noncharacters U+FFFE and U+FFFF stay out too.
_BAD_KEY_CHAR = re.compile(r"[\x00\x80-\x9f\ud800-\udfff\ufffe\uffff]")
# What no stored path can hold at all (a listing cursor is checked for it):
# NUL and lone surrogates. A cursor may sit on any key or just past a
# common prefix (``d\x7f`` is followed by ``d\x80``).
_NOT_STORABLE = re.compile(r"[\x00\ud800-\udfff]")


def check_cursor(raw: str, field: str) -> None:
    """A listing cursor holds nothing a stored path could not."""
    if _NOT_STORABLE.search(raw) is not None:
        raise BadArgument.about(field, "holds NUL or a lone surrogate")


def check_chars(raw: str, field: str, *, key: bool = False) -> None:
    """Refuse NUL, control characters and lone surrogates in ``raw``; a
    ``key`` (``object_key``) may hold the ASCII controls but NUL."""
    bad = (_BAD_KEY_CHAR if key else _BAD_CHAR).search(raw)
    if bad is not None:
        what = "NUL" if bad.group() == "\x00" else f"U+{ord(bad.group()):04X}"
        raise BadArgument.about(
            field,
            f"must not contain NUL, control characters or lone surrogates "
            f"(found {what} at index {bad.start()})",
        )


def check_segments(segments: list[str], field: str) -> None:
    """Refuse a segment longer than ``MAX_SEGMENT`` bytes (after ``check_chars``)."""
    for s in segments:
        if len(s.encode()) > MAX_SEGMENT:
            raise BadArgument.about(
                field,
                f"has a segment of {len(s.encode())} bytes; at most {MAX_SEGMENT} "
                f"bytes per name: {s[:40]!r}...",
            )


def check_length(raw: str, field: str, limit: int = MAX_PATH) -> None:
    """Refuse more than ``limit`` bytes of UTF-8 (after ``check_chars``)."""
    size = len(raw.encode())
    if size > limit:
        raise BadArgument.about(field, f"is {size} bytes long; at most {limit} bytes")


def object_path(raw: str, field: str = "path") -> str:
    """Normalise an object path: ``\\`` → ``/``; reject ``..``, ``.``, empty
    segments, NUL and control characters, over-long segments and paths,
    naming the field."""
    if not isinstance(raw, str):
        raise BadArgument.about(field, "must be a string")
    check_chars(raw, field)
    path = raw.replace("\\", "/").lstrip("/")
    if not path:
        raise BadArgument.about(field, "must not be empty")
    check_length(path, field)
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise BadArgument.about(field, f"must not contain empty, '.' or '..' segments: {raw!r}")
    check_segments(segments, field)
    return path


def object_key(raw: str, field: str = "path") -> str:
    """An object's name as S3 and the gateway give it: opaque, taken as it
    is. Any characters but NUL, the C1 controls, lone surrogates, U+FFFE
    and U+FFFF, ASCII controls included (as AWS), 1 to 1,024 bytes;
    leading, trailing and repeated
    ``/``, ``\\``, ``.`` and ``..`` are all part of the name (``a/`` and
    ``a`` are two objects). Only the JCS file-name paths (``object_path``)
    are normalised. A key that is not a relative file path is refused
    where it would become one (``spaces.base.check_key``, zip entries, the
    CLI's downloads)."""
    if not isinstance(raw, str):
        raise BadArgument.about(field, "must be a string")
    check_chars(raw, field, key=True)
    if not raw:
        raise BadArgument.about(field, "must not be empty")
    check_length(raw, field)
    return raw


def key_prefix(raw: str) -> str | None:
    """A listing prefix of keys (``object_key``), as it is; None when no
    key can begin with it (a control character), so the listing is empty."""
    if _BAD_KEY_CHAR.search(raw) is not None or len(raw.encode()) > MAX_PATH:
        return None
    return raw


def path_prefix(raw: str, field: str = "path") -> str:
    """A JCS listing prefix: ``\\`` is ``/`` and a leading ``/`` is dropped,
    as in a path; the rest is taken as it is, a prefix of keys, as S3's
    ``Prefix``. Objects written through S3 may have empty, ``.`` and ``..``
    segments (``b//y``, ``./d``) or long ones: each common prefix a listing
    answers, given back, lists what is under it (``b//`` was read as ``b/``
    and ``./`` refused until the cross-protocol review of 2026-12-07). It
    may hold the ASCII controls but NUL, as keys may (``check_chars``)."""
    if not isinstance(raw, str):
        raise BadArgument.about(field, "must be a string")
    check_chars(raw, field, key=True)
    prefix = raw.replace("\\", "/").lstrip("/")
    check_length(prefix, field)
    return prefix


def entity_name(raw: object, field: str) -> str:
    """A bucket, package or user space name: 1-255 bytes, no '/', '\\',
    control characters or surrounding spaces, and not '.' or '..'."""
    rule = (
        "1-255 bytes without '/', '\\', NUL or control characters or surrounding "
        "spaces, and not '.' or '..'"
    )
    if not isinstance(raw, str):
        raise BadArgument.about(field, f"must be a string of {rule}")
    check_chars(raw, field)
    if (
        not raw
        or len(raw.encode()) > MAX_SEGMENT
        or "/" in raw
        or "\\" in raw
        or raw.strip() != raw
        or raw in (".", "..")
    ):
        raise BadArgument.about(field, f"must be {rule}; got {raw[:40]!r}")
    return raw
