"""S3 XML in and out.

Out: the document is written as text (``render``), byte for byte what
ElementTree would write (a unit test compares the two on generated
documents): building an element tree for a listing of 1,000 keys cost more
than the listing's query. Every text is escaped (``&``, ``<``, ``>``).
In: ``defusedxml`` parses request bodies with DTDs,
entities and external references refused, after a size cap; element names
are taken without their namespace (clients send it or not).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Union

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from jointcloud.errors import BadArgument

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML = 1024 * 1024  # DeleteObjects of 1,000 keys of 1,024 bytes fits

# A field: (name, text) or (name, [sub-fields]); None values are left out.
Value = Union[str, int, bool, None, "Sequence[tuple[str, Value]]"]


class Fragment(str):
    """Elements already written as XML text, emitted as they are in place of
    a field (its name is not used): a listing writes its thousand entries
    straight to text instead of as a thousand field trees."""


def iso(value: datetime) -> str:
    """S3's timestamp: UTC, whole seconds written with ``.000`` and ``Z``,
    as AWS writes them (isoformat, not strftime: a listing formats a
    thousand of these). Not the milliseconds we keep: ``Last-Modified`` has
    whole seconds, and the AWS CLI stamps downloaded files with a listing's
    time cut to the second, so ``aws s3 sync --exact-timestamps`` found
    every file changed (found by review)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:-6] + ".000Z"  # "+00:00" -> ".000Z"


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if not text.isprintable():  # rare: one C-level scan for the common case
        text = _CONTROL.sub(_reference, text)
    return text


# Controls in text (a key may hold the ASCII ones but NUL, as on AWS), tab
# apart, are written as character references, as AWS writes them: CR and
# LF because a parser would read a raw CR as LF (a key holding one would
# come back changed); the others XML 1.0 cannot carry at all, and AWS
# writes ``&#x8;`` all the same, so a client that did not ask for
# ``encoding-type=url`` fails loudly instead of reading another key. (A
# stand-in such as U+FFFD made paginated listings resume after a key that
# does not exist and skip real ones, silently.)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f]")
_REFERENCES = {"\r": "&#13;", "\n": "&#10;"}


def _reference(match: re.Match[str]) -> str:
    char = match.group()
    return _REFERENCES.get(char) or f"&#x{ord(char):x};"


def _emit(out: list[str], fields: Iterable[tuple[str, Value]]) -> None:
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, Fragment):
            out.append(value)
            continue
        if isinstance(value, str | int | bool):
            text = _text(value)
            out.append(f"<{name}>{escape(text)}</{name}>" if text else f"<{name} />")
            continue
        inner: list[str] = []
        _emit(inner, value)
        if inner:
            out.append(f"<{name}>")
            out.extend(inner)
            out.append(f"</{name}>")
        else:
            out.append(f"<{name} />")


def fragment(fields: Iterable[tuple[str, Value]]) -> Fragment:
    """``fields`` written as XML text now (to go in place of a field later)."""
    out: list[str] = []
    _emit(out, fields)
    return Fragment("".join(out))


def render(root: str, fields: Iterable[tuple[str, Value]], *, namespace: bool = True) -> bytes:
    attrs = f' xmlns="{NAMESPACE}"' if namespace else ""
    inner: list[str] = []
    _emit(inner, fields)
    body = f"<{root}{attrs}>{''.join(inner)}</{root}>" if inner else f"<{root}{attrs} />"
    # xmlcharrefreplace: what ElementTree does with what UTF-8 cannot carry
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8", "xmlcharrefreplace")


class MalformedXMLError(BadArgument):
    """The body is not the XML the operation expects (S3: MalformedXML)."""


def parse(body: bytes, root: str) -> ET.Element:
    """A request document whose root element is ``root``."""
    if len(body) > MAX_XML:
        raise MalformedXMLError(f"the XML body is larger than {MAX_XML} bytes")
    if not body.strip():
        raise MalformedXMLError(f"the request needs an XML body with a <{root}> element")
    body, stood_in = _stand_in(body)
    try:
        element = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedXMLError(f"the XML body is refused: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise MalformedXMLError(f"the XML body is not well-formed: {exc}") from None
    except (LookupError, ValueError, UnicodeError) as exc:
        # the declaration names an encoding expat cannot read (unknown,
        # multi-byte, or a codec that is not text at all)
        raise MalformedXMLError(f"the XML body's encoding is not supported: {exc}") from None
    for node in element.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
        if stood_in:
            node.text = node.text and node.text.translate(_FROM_STAND_IN)
            node.tail = node.tail and node.tail.translate(_FROM_STAND_IN)
    if element.tag != root:
        raise MalformedXMLError(f"the XML root element is <{element.tag}>, expected <{root}>")
    return element


# A key may hold controls XML 1.0 refuses (as on AWS), and clients send
# them in request documents raw (botocore, through ElementTree) or as
# references (``&#x8;``); expat refuses both. While a UTF-8 document is
# parsed, each such control stands in as a noncharacter of U+FDD0-U+FDEF
# and is put back in the text after (a document that holds its own
# U+FDD0-U+FDEF beside controls is refused: they could not be told apart).
_RAW_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_REFERENCE = re.compile(rb"&#(?:[xX]0*([0-9a-fA-F]{1,2})|0*([0-9]{1,2}));")
_STAND_IN = 0xFDD0
_FROM_STAND_IN = {_STAND_IN + n: n for n in range(32)}
_STAND_IN_BYTES = re.compile(b"\xef\xb7[\x90-\xaf]")  # U+FDD0-U+FDEF in UTF-8
_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*encoding=")
_UTF8_DECLARATION = re.compile(rb"""^<\?xml[^>]*encoding=["'](utf-?8|us-ascii|ascii)["']""", re.I)


def _stand_in(body: bytes) -> tuple[bytes, bool]:
    """``body`` with its controls stood in for, and whether any was."""
    if _DECLARED_ENCODING.match(body) and not _UTF8_DECLARATION.match(body):
        return body, False  # another encoding: its bytes are not UTF-8's
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body, False  # UTF-16 by its byte order mark
    if b"<![CDATA[" in body:
        return body, False  # a reference there is literal text: left to expat
    if _RAW_CONTROL.search(body) is None and _CONTROL_REFERENCE.search(body) is None:
        return body, False
    if _STAND_IN_BYTES.search(body) is not None:
        # Its own U+FDD0-U+FDEF could not be told from stand-ins.
        raise MalformedXMLError(
            "the XML body holds both control characters and U+FDD0-U+FDEF, "
            "which cannot be read together"
        )
    changed = False

    def raw(match: re.Match[bytes]) -> bytes:
        nonlocal changed
        changed = True
        return chr(_STAND_IN + match.group()[0]).encode()

    def reference(match: re.Match[bytes]) -> bytes:
        nonlocal changed
        hexa, decimal = match.groups()
        code = int(hexa, 16) if hexa is not None else int(decimal)
        if code in (0, 9, 10, 13) or code > 31:
            return match.group()  # expat's own (or its refusal of NUL)
        changed = True
        return chr(_STAND_IN + code).encode()

    body = _RAW_CONTROL.sub(raw, body)
    body = _CONTROL_REFERENCE.sub(reference, body)
    return body, changed


def child_text(element: ET.Element, name: str) -> str | None:
    """The text of ``element``'s one ``name`` child (None: no such child);
    two of them are not one document's meaning (AWS: ``MalformedXML``)."""
    found = element.findall(name)
    if len(found) > 1:
        raise MalformedXMLError(f"<{element.tag}> holds more than one <{name}>")
    return (found[0].text or "") if found else None
