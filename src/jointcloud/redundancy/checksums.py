"""The additional checksums S3 clients ask for (CRC32, CRC32C, CRC64NVME, SHA-1,
SHA-256): computed segment by segment on the write path (``Checksums``), and a
CRC of a whole multipart object combined from its parts' (``combine_checksums``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

from awscrt import checksums as crt  # type: ignore[import-untyped]
from isal import isal_zlib

# The additional checksums, by their S3 names; each value is the base64 of
# the big-endian digest, as S3 returns it (``x-amz-checksum-crc32`` ...).
CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_CRCS: dict[str, tuple[Callable[[Any, int], int], int]] = {
    # ISA-L's CRC32 (carry-less multiply, ~50 GB/s here) rather than awscrt's
    # table-driven one (~1.7 GB/s): CRC32 is what current AWS SDKs send with
    # every upload, so awscrt's cost half a second of CPU per GB uploaded.
    "CRC32": (isal_zlib.crc32, 4),
    "CRC32C": (crt.crc32c, 4),
    "CRC64NVME": (crt.crc64nvme, 8),
}


_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}
FULL_OBJECT_CHECKSUMS = frozenset(_COMBINE)  # a CRC of the whole from its parts'


def combine_checksums(name: str, parts: Sequence[tuple[str, int]]) -> str:
    """The CRC ``name`` of a whole stream from those of its pieces, in order:
    (base64 value, byte length) each, as S3's FULL_OBJECT multipart checksum
    (awscrt's combine: no byte is read again)."""
    combine = _COMBINE[name]
    width = _CRCS[name][1]
    value = 0
    for i, (text, length) in enumerate(parts):
        crc = int.from_bytes(base64.b64decode(text), "big")
        value = crc if i == 0 else combine(value, crc, length)
    return base64.b64encode(value.to_bytes(width, "big")).decode()


class Checksums:
    """The additional checksums of one stream, updated segment by segment in
    the worker thread that already hashes it (awscrt's CRCs and hashlib both
    release the GIL). SHA-256 is not computed twice: it is the digest the
    write path computes anyway for ``fileHash``, handed to ``result``."""

    def __init__(self, names: Collection[str] = ()) -> None:
        unknown = set(names) - set(CHECKSUMS)
        if unknown:
            raise ValueError(f"unknown checksum algorithms: {sorted(unknown)}")
        self.names = frozenset(names)
        self._crcs = [(n, *_CRCS[n]) for n in CHECKSUMS if n in self.names and n in _CRCS]
        self._values = [0] * len(self._crcs)
        self._sha1 = hashlib.sha1() if "SHA1" in self.names else None

    def update(self, data: bytes | memoryview) -> None:
        for i, (_, fn, _) in enumerate(self._crcs):
            self._values[i] = fn(data, self._values[i])
        if self._sha1 is not None:
            self._sha1.update(data)

    def result(self, sha256: bytes) -> dict[str, str]:
        """Name → base64 digest; ``sha256`` is the stream's SHA-256 digest."""
        out: dict[str, str] = {}
        for (name, _, width), value in zip(self._crcs, self._values, strict=True):
            out[name] = base64.b64encode(value.to_bytes(width, "big")).decode()
        if self._sha1 is not None:
            out["SHA1"] = base64.b64encode(self._sha1.digest()).decode()
        if "SHA256" in self.names:
            out["SHA256"] = base64.b64encode(sha256).decode()
        return out
