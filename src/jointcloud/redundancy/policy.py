"""Redundancy policies: the JSON union ``{"type": "none"|"rep"|"ec", ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jointcloud.errors import BadArgument

DEFAULT_EC_CHUNK = 1024 * 1024
# Largest segment we keep in memory at once; bounds memory per upload.
MAX_EC_SEGMENT = 64 * 1024 * 1024


@dataclass(frozen=True)
class NonePolicy:
    """One copy in one space."""

    @property
    def width(self) -> int:
        return 1

    @property
    def needed(self) -> int:
        return 1

    def to_json(self) -> dict[str, Any]:
        return {"type": "none"}


@dataclass(frozen=True)
class RepPolicy:
    """``rep_count`` identical copies, each in a different space."""

    rep_count: int

    @property
    def width(self) -> int:
        return self.rep_count

    @property
    def needed(self) -> int:
        return 1

    def to_json(self) -> dict[str, Any]:
        return {"type": "rep", "repCount": self.rep_count}


@dataclass(frozen=True)
class EcPolicy:
    """Reed-Solomon: ``k`` data + ``n - k`` parity fragments per segment."""

    k: int
    n: int
    chunk_size: int = DEFAULT_EC_CHUNK

    @property
    def width(self) -> int:
        return self.n

    @property
    def needed(self) -> int:
        return self.k

    @property
    def segment_size(self) -> int:
        return self.k * self.chunk_size

    def to_json(self) -> dict[str, Any]:
        return {"type": "ec", "k": self.k, "n": self.n, "chunkSize": self.chunk_size}


Redundancy = NonePolicy | RepPolicy | EcPolicy


def _int_field(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if value is None:
        raise BadArgument(f"redundancy.{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgument(f"redundancy.{name} must be an integer")
    return value


def parse_redundancy(obj: Any) -> Redundancy:
    """Validate a redundancy JSON value; raise ``BadArgument`` naming the problem."""
    if not isinstance(obj, dict):
        raise BadArgument("redundancy must be an object with a 'type'")
    kind = obj.get("type")
    if kind == "none":
        return NonePolicy()
    if kind == "rep":
        count = _int_field(obj, "repCount")
        if not 1 <= count <= 16:
            raise BadArgument("redundancy.repCount must be between 1 and 16")
        return RepPolicy(count)
    if kind == "ec":
        k = _int_field(obj, "k")
        n = _int_field(obj, "n")
        chunk = _int_field(obj, "chunkSize", DEFAULT_EC_CHUNK)
        if not 1 <= k < n <= 32:
            raise BadArgument("redundancy must satisfy 1 <= k < n <= 32 for type 'ec'")
        if chunk < 4096 or k * chunk > MAX_EC_SEGMENT:
            raise BadArgument(
                f"redundancy.chunkSize must be at least 4096 and k*chunkSize at most "
                f"{MAX_EC_SEGMENT}"
            )
        return EcPolicy(k, n, chunk)
    raise BadArgument("redundancy.type must be one of 'none', 'rep', 'ec'")
