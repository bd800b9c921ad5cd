"""Byte ranges of ``/raw`` (one, or several as ``multipart/byteranges``),
content types safe to serve on the share origin, and ``Content-Disposition``
(RFC 6266 / RFC 8187)."""

from __future__ import annotations

import mimetypes
import re
import secrets
from urllib.parse import quote

from jointcloud.api.common.http import parse_byte_range
from jointcloud.core.commands import ByteRange
from jointcloud.core.models import ObjectInfo

# RFC 9110 §14.2 lets a server ignore a Range it finds excessive: past
# MAX_RANGES specs in the header, or MAX_PARTS parts once overlapping and
# adjacent ones are merged, the whole object is served (as Apache's
# MaxRanges and nginx's max_ranges do). Each part is a read of its own,
# its chunks fetched and decrypted again, hence the small bound on parts.
MAX_RANGES = 64
MAX_PARTS = 16
_UNITS = re.compile(r"^\s*bytes\s*=(.*)$", re.IGNORECASE)

# Types a browser would run script in, or that render as a document of
# the share origin: never served as themselves (text/plain instead).
ACTIVE = re.compile(
    r"html|xml|svg|javascript|ecmascript|jscript|livescript|xsl|mathml|x-mixed-replace|"
    r"cache-manifest|x-shockwave-flash|futuresplash|vnd\.wap|rdf|text/vtt|^text/x-|css|\*",
    re.IGNORECASE,
)
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/x-sh",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/x-python",
        "image/svg+xml",
    }
)
PLAIN = "text/plain; charset=utf-8"
DEFAULT_TYPE = "application/octet-stream"


def parse_ranges(header: str | None) -> list[ByteRange] | None:
    """The ranges of a ``Range`` header (``None``: serve the whole object —
    no header, other units, a malformed or excessive one)."""
    if not header:
        return None
    m = _UNITS.match(header)
    if m is None:
        return None
    specs = [s.strip() for s in m.group(1).split(",") if s.strip()]
    if not specs or len(specs) > MAX_RANGES:
        return None
    out = []
    for spec in specs:
        rng = parse_byte_range("bytes=" + spec)
        if rng is None:
            return None  # one malformed range: the whole header is ignored
        out.append(rng)
    return out


def resolve(rng: ByteRange, size: int) -> tuple[int, int] | None:
    """(offset, length) of ``rng`` in ``size`` bytes; None if it selects none."""
    if rng.suffix is not None:
        if rng.suffix == 0 or size == 0:
            return None
        length = min(rng.suffix, size)
        return size - length, length
    start = rng.start or 0
    if start >= size:
        return None
    end = size - 1 if rng.end is None else min(rng.end, size - 1)
    return start, end - start + 1


def coalesce(ranges: list[ByteRange], size: int) -> list[tuple[int, int]] | None:
    """The (offset, length) parts ``ranges`` select in ``size`` bytes, in
    order, overlapping and adjacent ones merged (RFC 9110 §15.3.7.2), so no
    byte is sent twice. Empty: none selects anything (416). None: more than
    ``MAX_PARTS`` parts (serve the whole object)."""
    spans = sorted(s for s in (resolve(r, size) for r in ranges) if s is not None)
    parts: list[tuple[int, int]] = []
    for offset, length in spans:
        if parts and offset <= parts[-1][0] + parts[-1][1]:
            start, before = parts[-1]
            parts[-1] = (start, max(before, offset + length - start))
        else:
            parts.append((offset, length))
    return None if len(parts) > MAX_PARTS else parts


def header_safe(value: str | None) -> str | None:
    """``value`` if it can stand in an HTTP header (visible ASCII and
    spaces), else None."""
    if value and value.isascii() and value.isprintable():
        return value
    return None


def stored_type(info: ObjectInfo) -> str:
    """The object's type: as stored with it, else by its name's extension."""
    stored = header_safe(info.meta.content_type)
    if stored:
        return stored
    guessed, _ = mimetypes.guess_type(info.path, strict=False)
    return guessed or DEFAULT_TYPE


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_active(content_type: str) -> bool:
    """Whether the type may run script or render as a page of the origin.
    A value with a comma is a list, and browsers take its last type (Fetch,
    "extract a MIME type"), which ``media_type`` does not look at: Chromium
    rendered ``application/pdf; x=1, text/html`` as HTML. Such a value is
    never served as itself."""
    return "," in content_type or bool(ACTIVE.search(media_type(content_type)))


def served_type(content_type: str) -> str:
    """What ``/raw`` says the bytes are: active types as plain text."""
    return PLAIN if is_active(content_type) else content_type


def is_text(content_type: str) -> bool:
    mt = media_type(content_type)
    return mt.startswith("text/") or mt in TEXT_TYPES or mt.endswith(("+json", "+xml"))


def preview_kind(content_type: str) -> str | None:
    """How a page previews the object: image, video, audio, pdf, text."""
    mt = media_type(content_type)
    if is_text(mt):
        return "text"
    if mt.startswith("image/"):
        return "image"
    if mt.startswith("video/"):
        return "video"
    if mt.startswith("audio/"):
        return "audio"
    if mt == "application/pdf":
        return "pdf"
    return None


def disposition(kind: str, filename: str) -> str:
    """``inline`` or ``attachment`` with an ASCII ``filename`` and the
    exact name as ``filename*`` (UTF-8, percent-encoded)."""
    fallback = "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in '"\\%;' else "_" for c in filename
    ).strip()
    return (
        f'{kind}; filename="{fallback or "download"}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )


def boundary() -> str:
    return "jcs-share-" + secrets.token_hex(12)
