"""The S3 XML writer (``xmlio.render``) writes exactly what ElementTree
writes for the same fields: names, nesting, escaping, empty elements,
booleans and numbers, the namespace on the root."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.api.s3.xmlio import NAMESPACE, Value, render


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
