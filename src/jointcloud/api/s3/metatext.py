"""Metadata text in and out of HTTP headers.

HTTP hands a server header bytes, which ASGI gives us as ISO-8859-1 text.
The SDKs that send non-ASCII values raw (botocore, the JavaScript SDK) send
UTF-8, so such bytes are read as UTF-8 when they are valid UTF-8
(``stored_text``); a POST form field is text already (``form_text``).

User metadata (``x-amz-meta-*``) as AWS does it (the S3 user guide,
"User-defined object metadata"): RFC 2047 encoded-words are decoded before
storing, and a value that is not printable US-ASCII is returned as one
``=?UTF-8?B?...?=`` encoded-word (``metadata_header``).

The other headers a client chose (Content-Disposition and the like, stored
or as ``response-*`` overrides) go back as the UTF-8 they came in as
(``plain_header``): an encoded-word would hide ``attachment;`` from a
browser. A control character cannot stand in a header at all: an override
holding one is refused (``has_control``), a stored value (from a POST form
field) falls back to an encoded-word. So no value can break a response.
``email.header`` does the decoding (stdlib); the encoding is one line.
"""

from __future__ import annotations

import base64
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

# A value made only of encoded-words (RFC 2047 §2), with whitespace between.
_ENCODED_WORDS = re.compile(r"(?:=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=\s*)+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but tab: not in a header


def stored_text(raw: str) -> str:
    """The text a client meant by header value ``raw`` (ISO-8859-1 bytes):
    encoded-words decoded, raw UTF-8 read as UTF-8, anything else kept."""
    if _ENCODED_WORDS.fullmatch(raw.strip()):
        try:
            return str(make_header(decode_header(raw)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError):
            return raw  # a malformed word (bad base64, unknown charset): as sent
    if raw.isascii():
        return raw
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def form_text(value: str) -> str:
    """A POST form field (already text): encoded-words decoded."""
    return stored_text(value) if value.isascii() else value


def metadata_header(text: str) -> str:
    """A user metadata value as AWS returns it: printable ASCII unchanged,
    else one ``=?UTF-8?B?...?=`` encoded-word of its UTF-8."""
    if text.isascii() and (text.isprintable() or not has_control(text)):
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() + "?="


def plain_header(text: str) -> str:
    """Any other header value: its UTF-8 on the wire (as ISO-8859-1 text,
    which is what the ASGI server encodes), or an encoded-word if it holds
    a control character."""
    if text.isascii() and text.isprintable():
        return text
    if has_control(text):
        return metadata_header(text)
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character no header value may (all C0
    controls but tab, and DEL)."""
    return _CONTROL.search(text) is not None
