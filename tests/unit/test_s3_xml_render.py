"""The S3 XML writer (``xmlio.render``) writes exactly what ElementTree
writes for the same fields (names, nesting, escaping, empty elements,
booleans and numbers, the namespace on the root), except that controls in
text but tab are character references, as AWS writes them: a parser would
read a raw CR as LF, so a key holding one would come back changed; the
others XML 1.0 cannot carry at all, and a client that did not ask for
``encoding-type=url`` must fail loudly, not read another key."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.api.s3 import ops_bucket
from jointcloud.api.s3.xmlio import NAMESPACE, Value, render
from jointcloud.core.authz import Principal
from jointcloud.core.models import ChecksumAlgorithm, ListedObject


def reference(root: str, fields: Iterable[tuple[str, Value]], *, namespace: bool = True) -> bytes:
    def fill(parent: ET.Element, items: Iterable[tuple[str, Value]]) -> None:
        for name, value in items:
            if value is None:
                continue
            child = ET.SubElement(parent, name)
            if isinstance(value, bool):
                child.text = "true" if value else "false"
            elif isinstance(value, str | int):
                child.text = str(value)
            else:
                fill(child, value)

    element = ET.Element(root, {"xmlns": NAMESPACE} if namespace else {})
    fill(element, fields)
    text: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=False)
    text = text.replace(b"\r", b"&#13;").replace(b"\n", b"&#10;")
    for code in (*range(0, 9), *range(11, 13), *range(14, 32)):
        text = text.replace(bytes([code]), f"&#x{code:x};".encode())
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text


names = st.sampled_from(["Key", "ETag", "Size", "Contents", "Prefix", "Owner", "ID"])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=30),
    st.sampled_from(["", "a&b", "<x>", "]]>", '"q"', "\u00e9\u4e2d", "\r\n\t", "\ud800"]),
)
values = st.recursive(leaves, lambda inner: st.lists(st.tuples(names, inner), max_size=4))
documents = st.lists(st.tuples(names, values), max_size=6)


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans())
def test_render_matches_elementtree(fields: list[tuple[str, Value]], namespace: bool) -> None:
    assert render("ListBucketResult", fields, namespace=namespace) == reference(
        "ListBucketResult", fields, namespace=namespace
    )


def test_a_listing_document() -> None:
    fields: list[tuple[str, Value]] = [
        ("Name", "b"),
        ("Prefix", ""),
        ("KeyCount", 1),
        ("IsTruncated", False),
        ("Contents", [("Key", "a<&>b"), ("ETag", '"0cc1"'), ("Size", 3)]),
        ("CommonPrefixes", []),
    ]
    out = render("ListBucketResult", fields)
    assert out == reference("ListBucketResult", fields)
    assert b"<Key>a&lt;&amp;&gt;b</Key>" in out and b"<Prefix />" in out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab\t\r\n &<>\u00e9"), max_size=12))
def test_text_with_line_breaks_parses_back_unchanged(key: str) -> None:
    """What a client's parser reads is the key that was stored, CR and
    CR LF included (ElementTree's own output would turn both into LF)."""
    out = render("ListBucketResult", [("Contents", [("Key", key)])])
    parsed = ET.fromstring(out).find(f"{{{NAMESPACE}}}Contents/{{{NAMESPACE}}}Key")
    assert parsed is not None and (parsed.text or "") == key


objects = st.builds(
    lambda path, size, etag, ms, algs: ListedObject(
        path,
        size,
        etag,
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms),
        tuple(algs),
    ),
    st.text(min_size=1, max_size=20),
    st.integers(min_value=0, max_value=10**13),
    st.sampled_from(["d41d8cd98f00b204e9800998ecf8427e", "abc-3", "a&<b>"]),
    st.integers(min_value=0, max_value=10**10),
    st.lists(st.sampled_from(list(ChecksumAlgorithm)), unique=True, max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(objects, max_size=5), st.booleans(), st.booleans())
def test_listing_entries_written_as_text_match_elementtree(
    items: list[ListedObject], url: bool, with_owner: bool
) -> None:
    """A listing's entries are written straight to text (``Fragment``, a
    piece at a time): the bytes are ElementTree's for the same fields, plain
    or URL-encoded keys, with or without each entry's owner."""
    enc = (lambda p: quote(p, safe="/")) if url else (lambda p: p)
    who = Principal(7) if with_owner else None
    contents = asyncio.run(ops_bucket._contents(items, enc, who))
    fields: list[tuple[str, Value]] = [("Name", "b"), *contents]
    trees: list[tuple[str, Value]] = [
        ("Name", "b"),
        *(("Contents", ops_bucket._content_fields(o, enc, who)) for o in items),
    ]
    assert render("ListBucketResult", fields) == reference("ListBucketResult", trees)
