"""The S3 request parser (``xmlio.parse``) with keys that hold controls, as
AWS takes them: sent raw (botocore writes them so, through ElementTree) or
as character references, both refused by expat, they are read back exactly.
NUL and what is not UTF-8 stay refused; the stand-ins used while parsing
never leak into what was sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.api.s3.xmlio import MalformedXMLError, parse


def key_of(body: bytes) -> str | None:
    return parse(body, "Delete").findtext("Object/Key")


def test_raw_controls_and_references_are_read_back() -> None:
    body = b"<Delete><Object><Key>a\x08b&#x7;c&#13;d&#9;e&#27;f&#x01B;</Key></Object></Delete>"
    assert key_of(body) == "a\x08b\x07c\rd\te\x1bf\x1b"
    declared = (
        '<?xml version="1.0" encoding="UTF-8"?><Delete><Object><Key>é\x1b</Key></Object></Delete>'
    )
    assert key_of(declared.encode()) == "é\x1b"


def test_nul_stays_refused() -> None:
    for body in (b"<Delete><Object><Key>a\x00b</Key></Object></Delete>",
                 b"<Delete><Object><Key>a&#0;b</Key></Object></Delete>"):  # fmt: skip
        with pytest.raises(MalformedXMLError):
            parse(body, "Delete")


def test_another_encoding_is_not_rewritten() -> None:
    """In UTF-16 the bytes 0x01-0x1F are halves of ordinary characters: the
    document is left to expat as it is."""
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        "<Delete><Object><Key>\u0108k</Key></Object></Delete>"
    )
    assert key_of(text.encode("utf-16")) == "\u0108k"


def test_stand_ins_sent_as_such_are_not_turned_into_controls() -> None:
    """U+FDD0-U+FDEF in a document are not controls (no key holds one:
    ``paths.object_key`` refuses them), and a document without controls is
    parsed as it is."""
    assert key_of("<Delete><Object><Key>\ufdd8</Key></Object></Delete>".encode()) == "\ufdd8"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab\x01\x08\x0b\x1f\t&<é"), min_size=1, max_size=16))
def test_any_key_round_trips_through_a_document(key: str) -> None:
    escaped = key.replace("&", "&amp;").replace("<", "&lt;")
    assert key_of(f"<Delete><Object><Key>{escaped}</Key></Object></Delete>".encode()) == key


def test_own_noncharacters_beside_controls_are_refused() -> None:
    """U+FDD0-U+FDEF stand in for controls while a document is parsed: a
    document holding its own beside controls could not be read back
    faithfully (another key could be named), so it is refused."""
    body = "<Delete><Object><Key>x\ufddab</Key></Object><Object><Key>c&#x1;</Key></Object></Delete>"
    with pytest.raises(MalformedXMLError):
        parse(body.encode(), "Delete")


def test_a_reference_in_cdata_stays_literal() -> None:
    body = b"<Delete><Object><Key><![CDATA[a&#x8;b]]></Key></Object></Delete>"
    assert key_of(body) == "a&#x8;b"
