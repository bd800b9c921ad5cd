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
    """S3's timestamp: UTC with milliseconds and ``Z`` (isoformat, not
    strftime: a listing formats a thousand of these)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


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
    # A parser reads a raw CR (or CR LF) as LF: a key holding one would
    # come back changed. AWS writes both as character references.
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if "\n" in text:
        text = text.replace("\n", "&#10;")
    return text


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
    if element.tag != root:
        raise MalformedXMLError(f"the XML root element is <{element.tag}>, expected <{root}>")
    return element


def child_text(element: ET.Element, name: str) -> str | None:
    found = element.find(name)
    return None if found is None else (found.text or "")
