"""Where the parts of an object lie: S3's ``partNumber`` reads and
GetObjectAttributes. An object completed from N uploaded parts (its ETag
``<md5>-N``) keeps their boundaries, each part one layout; any other object
is one part, the whole of it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from jointcloud.core.commands import ChecksumAlgorithm
from jointcloud.core.models import ObjectContent, ObjectInfo
from jointcloud.errors import BadArgument, InvalidRange


class ObjectAttributes(NamedTuple):
    """An object and, for one completed from uploaded parts, their sizes in
    order (S3's GetObjectAttributes) and each one's own checksums (empty
    where none were kept); None for an object of one piece."""

    info: ObjectInfo
    part_sizes: tuple[int, ...] | None
    part_checksums: tuple[Mapping[ChecksumAlgorithm, str], ...] | None = None


class PartRange(NamedTuple):
    """Where one part of an object lies (S3's ``partNumber`` reads)."""

    offset: int
    length: int
    parts_count: int
    multipart: bool  # completed from uploaded parts (its ETag ``<md5>-N``)
    # The checksums of those bytes: the part's own as uploaded (none kept:
    # empty), or the object's when the part is the whole object.
    checksums: Mapping[ChecksumAlgorithm, str] = {}


_COMPOSITE_ETAG = re.compile(r"^[0-9a-f]{32}-([0-9]+)$")


def multipart_etag(etag: str) -> bool:
    """Whether ``etag`` is that of an object completed from uploaded parts
    (``<md5>-N``), not the MD5 of its bytes."""
    return _COMPOSITE_ETAG.match(etag) is not None


def part_sizes(content: ObjectContent) -> tuple[int, ...] | None:
    """The sizes of the parts an object was completed from (its ETag
    ``<md5>-N``, N layouts: each part is one), in order; None for an object
    of one piece."""
    info, parts = content.info, content.parts
    found = _COMPOSITE_ETAG.match(info.etag)
    if found is None or int(found.group(1)) != len(parts):
        return None
    ends = [off for off, _ in parts[1:]] + [info.size]
    return tuple(end - off for (off, _), end in zip(parts, ends, strict=True))


def part_of(content: ObjectContent, part_number: int) -> PartRange:
    """Where part ``part_number`` (1-based) of the object lies, and how many
    parts it has (``ObjectService.head_part``)."""
    if part_number < 1:
        raise BadArgument("part numbers start at 1")
    size = content.info.size
    sizes = part_sizes(content)
    count = 1 if sizes is None else len(sizes)
    if part_number > count:
        raise InvalidRange(
            f"The requested partnumber is not satisfiable: part {part_number} of "
            f"an object of {count} part{'' if count == 1 else 's'}",
            size=size,
        )
    if sizes is None:
        return PartRange(0, size, 1, False, content.info.checksums)
    sums = part_checksums(content)
    return PartRange(
        sum(sizes[: part_number - 1]),
        sizes[part_number - 1],
        count,
        True,
        {} if sums is None else sums[part_number - 1],
    )


def part_checksums(content: ObjectContent) -> tuple[Mapping[ChecksumAlgorithm, str], ...] | None:
    """Each part's own checksums, where they were kept (else None)."""
    sums = content.part_checksums
    return sums if len(sums) == len(content.parts) and any(sums) else None


def attributes_of(content: ObjectContent) -> ObjectAttributes:
    """The object's record, its parts' sizes and their own checksums."""
    sizes = part_sizes(content)
    return ObjectAttributes(content.info, sizes, None if sizes is None else part_checksums(content))
