"""Macaroon v2 framing and HMAC chain against storj.io/common/macaroon's own vectors."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.errors import BadArgument
from jointcloud.keys.macaroon import Macaroon, new_secret, sign

# FuzzParseMacaroon seeds (macaroon/macaroon_test.go). The first two were made
# by TestNilMacaroon, i.e. with a nil secret: their chain verifies with b"".
# The third was made with a random secret (TestMacaroon).
GO_UNRESTRICTED = bytes.fromhex(
    "020220fb22e5503005ca6005c54a5d051c4ca0955845fe7744d011dd6909a14605236e0000"
    "06205b502acdc36469caebbef6a306748f9cc30d47fdd9d1d9b90d8d18e9f95a6f07"
)
GO_CAV1 = bytes.fromhex(
    "02022010af1ac3d9c973463b14ab4201456707b48fdb674b56b9dc413c11063cfca8b900"
    "020463617631000006209f8386e124ebaecfb864f16e764094d0ee9ead837e9d32b8c1f84fbda43f977a"
)
GO_CAV1_B = bytes.fromhex(
    "020220f7225bb8928c6241442c1564b7a5de1a9d78f64b23e9d96adf8e31679cd041d800"
    "02046361763100000620caa31acac6cc465e1d2abe150f1a5a7a44aaa88b29ed7442677962ef828281ad"
)


@pytest.mark.parametrize("data", [GO_UNRESTRICTED, GO_CAV1, GO_CAV1_B])
def test_go_vectors_parse_and_reserialize(data: bytes) -> None:
    mac = Macaroon.parse(data)
    assert mac.serialize() == data
    assert len(mac.head) == 32
    assert not mac.validate(b"x" * 32)


@pytest.mark.parametrize("data", [GO_UNRESTRICTED, GO_CAV1])
def test_go_vectors_made_with_nil_secret_verify(data: bytes) -> None:
    assert Macaroon.parse(data).validate(b"")
    assert not Macaroon.parse(GO_CAV1_B).validate(b"")


def test_go_vector_caveat_is_cav1() -> None:
    mac = Macaroon.parse(GO_CAV1)
    assert mac.caveats == (b"cav1",)
    # the chain, spelled out: tail0 = HMAC(secret, head), tail1 = HMAC(tail0, "cav1")
    tail0 = hmac.new(b"", mac.head, hashlib.sha256).digest()
    tail1 = hmac.new(tail0, b"cav1", hashlib.sha256).digest()
    assert mac.tails(b"") == (tail0, tail1)
    assert mac.tail == tail1


def test_go_vector_adding_cav1_reproduces_the_published_tail() -> None:
    base = Macaroon.parse(GO_CAV1)
    root = Macaroon.new_unrestricted(b"", head=base.head)
    assert root.add_first_party_caveat(b"cav1").serialize() == GO_CAV1


def test_new_add_validate_tails() -> None:
    secret = new_secret()
    assert len(secret) == 32
    mac = Macaroon.new_unrestricted(secret)
    assert len(mac.head) == 32 and mac.caveats == ()
    assert mac.tail == sign(secret, mac.head)
    child = mac.add_first_party_caveat(b"cav1").add_first_party_caveat(b"cav2")
    assert child.head == mac.head
    assert child.validate(secret)
    ok, tails = child.validate_and_tails(secret)
    assert ok and tails[0] == mac.tail and tails[-1] == child.tail and len(tails) == 3
    assert Macaroon.parse(child.serialize()) == child
    # dropping or altering a caveat breaks the chain
    assert not Macaroon(child.head, child.caveats[:1], child.tail).validate(secret)
    assert not Macaroon(child.head, (b"cav1", b"cav3"), child.tail).validate(secret)


def test_location_and_verification_id_are_accepted_and_dropped() -> None:
    mac = Macaroon.parse(GO_CAV1)
    head_section = bytes([1, 3]) + b"loc" + bytes([2, 32]) + mac.head + b"\x00"
    cav_section = bytes([2, 4]) + b"cav1" + bytes([4, 2]) + b"id" + b"\x00"
    data = b"\x02" + head_section + cav_section + b"\x00" + bytes([6, 32]) + mac.tail
    assert Macaroon.parse(data) == mac


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty macaroon"),
        (b"\x02", "truncated macaroon"),
        (b"\x01\x02", "unsupported macaroon version 1"),
        (GO_CAV1[:-1], "truncated macaroon"),
        (GO_CAV1[:40], "truncated macaroon"),
        (GO_CAV1 + b"\x00", "trailing bytes after signature"),
        (b"\x02\x02\x01a\x02\x01b\x00", "macaroon fields out of order"),
        (b"\x02\x00", "invalid macaroon header"),
        (b"\x02\x02\x01a\x00\x06\x01a\x00", "caveat without identifier"),
        (b"\x02\x02\x01a\x00\x00\x06\x01a", "signature has 1 bytes, expected 32"),
        (b"\x02\x02\x01a\x00\x00\x04\x00", "signature missing"),
        (b"\x02\x02\xff\xff\xff\xff\x0f", "macaroon varint out of range"),
        (b"\x02\x02" + b"\xff" * 11, "macaroon varint out of range"),
        (b"\x02\x02\x01a\x00\x02\x01a\x03\x00\x00", "invalid field 3 in caveat"),
        (b"\x02\x02\x01a\x00\x02\x01a\x04\x00\x06\x00\x00", "extra fields in caveat"),
    ],
)
def test_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(BadArgument) as err:
        Macaroon.parse(data)
    assert err.value.message == f"API key: {problem}"


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_parse_only_bad_argument(data: bytes) -> None:
    try:
        mac = Macaroon.parse(data)
    except BadArgument:
        return
    assert Macaroon.parse(mac.serialize()) == mac


@settings(max_examples=100)
@given(st.binary(max_size=80), st.lists(st.binary(max_size=300), max_size=5))
def test_round_trip_and_mutations(secret: bytes, caveats: list[bytes]) -> None:
    mac = Macaroon.new_unrestricted(secret)
    for cav in caveats:
        mac = mac.add_first_party_caveat(cav)
    data = mac.serialize()
    assert Macaroon.parse(data) == mac
    assert mac.validate(secret)
    for cut in range(len(data)):
        try:
            Macaroon.parse(data[:cut])
        except BadArgument:
            continue
        raise AssertionError(f"prefix of length {cut} parsed")
