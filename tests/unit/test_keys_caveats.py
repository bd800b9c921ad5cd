"""API keys and caveats against the published format (storj.io/common/macaroon)."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.errors import BadArgument
from jointcloud.keys.caveats import (
    BASIC_PERMISSIONS,
    MAX_BASE58,
    APIKey,
    CaveatPath,
    KeyCaveat,
    Permission,
    api_key_from_parts,
    base58check_decode,
    base58check_encode,
    new_api_key,
    new_secret,
)
from jointcloud.keys.macaroon import Macaroon

# uplink access_test.go, edge authadminclient_test.go: a satellite's unrestricted
# test key; the satellite made it with a nil secret, so its chain verifies with b"".
UPLINK_API_KEY = (
    "13Yqe3oHi5dcnGhMu2ru3cmePC9iEYv6nDrYMbLRh4wre1KtVA9SFwLNAuuvWwc43b9sw"
    "RsrfsnrbuTHQ6TJKVt4LjGnaARN9PhxJEu"
)
UPLINK_API_KEY_HEAD = "4dff5d8e6b3506be68cf76b480ab1261ac391fe5a2f7db66d1293d68109f3665"

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_published_key_parses_and_verifies() -> None:
    key = APIKey.parse(UPLINK_API_KEY)
    assert key.head.hex() == UPLINK_API_KEY_HEAD
    assert key.caveats() == ()
    assert key.serialize() == UPLINK_API_KEY
    assert key.verify(b"")
    assert not key.verify(new_secret())
    assert key == api_key_from_parts(key.head, b"")
    assert APIKey.parse("  " + UPLINK_API_KEY + "\n") == key


def test_caveat_bytes_match_picobuf_encoding() -> None:
    """Encoded by hand after types.pico.go: fields in number order, false
    bools and empty bytes omitted, paths as always-present messages, times
    as (seconds, nanos) messages."""
    cav = KeyCaveat(
        disallow=frozenset({Permission.READ, Permission.DELETE, Permission.LOCK}),
        paths=(CaveatPath("a-test-bucket", "a-test-path"), CaveatPath("", "")),
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        not_before=datetime(1970, 1, 1, 0, 0, 1, 500, tzinfo=UTC),
        max_object_ttl=timedelta(hours=2),
        nonce=b"\x01\x02\x03\x04",
    )
    expected = (
        b"\x08\x01"  # 1 disallow_reads
        + b"\x20\x01"  # 4 disallow_deletes
        + b"\x28\x01"  # 5 disallow_locks
        + _field(10, _field(1, b"a-test-bucket") + _field(2, b"a-test-path"))
        + _field(10, b"")
        + _field(20, b"\x08" + _varint(1893456000))
        + _field(21, b"\x08\x01\x10" + _varint(500_000))
        + _field(22, b"\x08" + _varint(7200))
        + _field(30, b"\x01\x02\x03\x04")
    )
    assert cav.to_bytes() == expected
    assert KeyCaveat.from_bytes(expected) == cav


def test_go_style_restriction_decodes() -> None:
    """A caveat as uplink's Share writes it (grant.Restrict: every permission
    not granted is disallowed, 4-byte nonce)."""
    raw = (
        b"\x10\x01\x20\x01\x28\x01\x30\x01\x38\x01\x40\x01\x48\x01"
        + _field(10, _field(1, b"photos") + _field(2, b"2024"))
        + b"\x58\x01\x60\x01\x68\x01\x70\x01\x78\x01"
        + _field(30, b"\xde\xad\xbe\xef")
    )
    cav = KeyCaveat.from_bytes(raw)
    assert cav.allowed == {Permission.READ, Permission.LIST}
    assert cav.disallow == set(Permission) - {Permission.READ, Permission.LIST}
    assert cav.paths == (CaveatPath("photos", "2024"),)
    assert cav.nonce == b"\xde\xad\xbe\xef"
    assert KeyCaveat.allowing(["read", "list"], paths=[("photos", "2024")]).disallow == cav.disallow


def test_restrict_round_trip_and_chain() -> None:
    secret = new_secret()
    root = new_api_key(secret)
    assert len(root.head) == 32 and root.verify(secret)
    cav = KeyCaveat.allowing(
        ["read", "list"], paths=[("photos", "2024/")], not_after=NOW + timedelta(days=1)
    )
    child = root.restrict(cav)
    text = child.serialize()
    again = APIKey.parse(text)
    assert again == child and again.serialize() == text
    assert again.head == root.head and again.tail != root.tail
    assert again.verify(secret)
    (decoded,) = again.caveats()
    assert len(decoded.nonce) == 4
    assert decoded.paths == cav.paths and decoded.not_after == cav.not_after
    # revocation: the parent's tails are a prefix of the child's
    assert again.tails(secret)[:1] == root.tails(secret)
    assert again.tails(secret)[-1] == again.tail
    # a forged caveat list does not verify
    forged = Macaroon(child.head, (), child.tail)
    assert not APIKey(forged).verify(secret)


def test_nonce_makes_equal_restrictions_distinct() -> None:
    """TestNonce: equal caveats without a nonce give equal keys; with the
    random nonce they differ (so each can be revoked alone)."""
    secret = new_secret()
    key = new_api_key(secret)
    cav = KeyCaveat(disallow=frozenset({Permission.READ}))
    assert key.restrict(cav, nonce=b"") == key.restrict(cav, nonce=b"")
    a, b = key.restrict(cav), key.restrict(cav)
    assert a.head == b.head and a.tail != b.tail


def test_restrict_validation() -> None:
    key = new_api_key(new_secret())
    with pytest.raises(BadArgument, match="caveat: not_after before not_before"):
        key.restrict(KeyCaveat(not_before=NOW, not_after=NOW - timedelta(seconds=1)))
    with pytest.raises(BadArgument, match="caveat: empty permission set"):
        key.restrict(KeyCaveat(disallow=BASIC_PERMISSIONS))
    with pytest.raises(BadArgument, match="caveat: empty permission set"):
        key.restrict(KeyCaveat.allowing([]))
    with pytest.raises(BadArgument, match="time zone"):
        key.restrict(KeyCaveat(not_after=datetime(2030, 1, 1)))
    with pytest.raises(BadArgument, match="max_object_ttl must be positive"):
        key.restrict(KeyCaveat(max_object_ttl=timedelta(0)))
    with pytest.raises(BadArgument, match="unknown permission"):
        KeyCaveat.allowing(["read", "fly"])
    with pytest.raises(BadArgument, match="secret must be 32 bytes"):
        new_api_key(b"short")


def test_expiration_like_go() -> None:
    """TestExpiration of apikey_test.go."""
    key = new_api_key(new_secret())
    not_before_later = key.restrict(KeyCaveat(not_before=NOW + timedelta(minutes=1)))
    not_after_ago = key.restrict(KeyCaveat(not_after=NOW - timedelta(minutes=1)))
    read = Permission.READ
    cases = [
        (key, NOW, True),
        (not_before_later, NOW, False),
        (not_after_ago, NOW, False),
        (key, NOW - timedelta(minutes=2), True),
        (not_before_later, NOW - timedelta(minutes=2), False),
        (not_after_ago, NOW - timedelta(minutes=2), True),
        (key, NOW + timedelta(minutes=2), True),
        (not_before_later, NOW + timedelta(minutes=2), True),
        (not_after_ago, NOW + timedelta(minutes=2), False),
    ]
    for k, at, allowed in cases:
        assert (k.refusal(read, None, None, at) is None) is allowed
    assert not_after_ago.not_after() == NOW - timedelta(minutes=1)


def test_paths_and_allowed_buckets_like_go() -> None:
    """TestGetAllowedBuckets and TestSerializeParseRestrictAndCheck."""
    key = new_api_key(new_secret())
    k = key.restrict(KeyCaveat(paths=(CaveatPath("test1"), CaveatPath("test2"))))
    k = k.restrict(KeyCaveat(paths=(CaveatPath("test1"), CaveatPath("test3"))))
    assert k.allowed_buckets() == frozenset({"test1"})
    k = k.restrict(KeyCaveat(disallow=frozenset({Permission.WRITE})))
    assert k.allowed_buckets() == frozenset({"test1"})
    assert key.allowed_buckets() is None

    p = key.restrict(KeyCaveat(paths=(CaveatPath("a-test-bucket", "a-test-path"),)))
    assert p.refusal(Permission.READ, "a-test-bucket", "a-test-path/x", NOW) is None
    why = p.refusal(Permission.READ, "another-test-bucket", "another-test-path", NOW)
    assert why is not None and "another-test-bucket" in why
    why = p.refusal(Permission.WRITE, "a-test-bucket", "elsewhere", NOW)
    assert why is not None and "outside the allowed prefixes" in why
    # bucket metadata reads are allowed in the named buckets only
    assert p.refusal(Permission.READ, "a-test-bucket", None, NOW) is None
    assert p.refusal(Permission.READ, "other", None, NOW) is not None
    ro = key.restrict(KeyCaveat.allowing(["read", "list"]))
    why = ro.refusal(Permission.DELETE, "b", "k", NOW)
    assert why is not None and why.startswith("caveat 1 (allow read, list)") and "delete" in why


def test_get_retention_follows_put_retention_like_go() -> None:
    """``(*Caveat).Allows``, ActionGetObjectRetention: refused only when
    both disallow_put_retention and disallow_get_retention are set (a key
    that may set a retention may read it back)."""
    key = new_api_key(new_secret())
    get, put = Permission.GET_RETENTION, Permission.PUT_RETENTION
    cases = [
        (frozenset(), True),
        (frozenset({get}), True),
        (frozenset({put}), True),
        (frozenset({get, put}), False),
    ]
    for disallow, allowed in cases:
        k = key.restrict(KeyCaveat(disallow=disallow))
        assert (k.refusal(get, "b", "k", NOW) is None) is allowed, disallow
    # the other object-lock actions follow their own field alone
    assert key.restrict(KeyCaveat(disallow=frozenset({put}))).refusal(put, "b", "k", NOW)
    # grant.Restrict's caveat (KeyCaveat.allowing) disallows both unless asked
    assert key.restrict(KeyCaveat.allowing(["read"])).refusal(get, "b", "k", NOW)


def test_max_object_ttl_shortest_wins() -> None:
    key = new_api_key(new_secret())
    assert key.max_object_ttl() is None
    k = key.restrict(KeyCaveat(max_object_ttl=timedelta(hours=2)))
    k = k.restrict(KeyCaveat(max_object_ttl=timedelta(hours=1)))
    k = k.restrict(KeyCaveat(max_object_ttl=timedelta(hours=3)))
    assert APIKey.parse(k.serialize()).max_object_ttl() == timedelta(hours=1)


def _key_text(mac: Macaroon) -> str:
    return base58check_encode(mac.serialize())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "API key: empty"),
        ("0OIl", "API key: bad base58"),
        ("13Yqé", "API key: bad base58"),
        ("1111", "API key: truncated base58check"),
        (
            UPLINK_API_KEY[:-1] + ("2" if UPLINK_API_KEY[-1] != "2" else "3"),
            "API key: bad base58check checksum",
        ),
        (base58check_encode(b"\x02\x02", version=1), "API key: unsupported base58check version 1"),
        (base58check_encode(b"\x02\x02\x20"), "API key: truncated macaroon"),
        (base58check_encode(b""), "API key: empty macaroon"),
    ],
)
def test_malformed_keys(text: str, problem: str) -> None:
    with pytest.raises(BadArgument) as err:
        APIKey.parse(text)
    assert err.value.message.startswith(problem)


def test_unknown_and_garbage_caveats() -> None:
    root = Macaroon.new_unrestricted(b"")
    cases = {
        b"\x80\x01\x01": "API key: caveat 1: unknown field 16",
        b"\xf8\x01\x01": "API key: caveat 1: unknown field 31",
        _field(10, b"\x18\x01"): "API key: caveat 1: unknown field 3",  # inside a path
        _field(20, b"\x18\x01"): "API key: caveat 1: unknown field 3",  # inside a time
        b"\x0a\x00": "API key: caveat 1: field 1 (disallow_reads) has the wrong wire type",
        b"\xff\xff": "API key: caveat 1: not a valid protobuf message",
        b"cav1": "API key: caveat 1: not a valid protobuf message",
    }
    for raw, message in cases.items():
        with pytest.raises(BadArgument) as err:
            APIKey.parse(_key_text(root.add_first_party_caveat(raw)))
        assert err.value.message == message, raw


def test_decodes_faithfully_what_restrict_refuses() -> None:
    """A key made elsewhere with an odd caveat parses; the caller judges."""
    cav = KeyCaveat(
        disallow=BASIC_PERMISSIONS,
        not_before=NOW,
        not_after=NOW - timedelta(days=1),
        paths=(CaveatPath("b", "\udcff\udcfe"),),
    )
    key = APIKey(Macaroon.new_unrestricted(b"").add_first_party_caveat(cav.to_bytes()))
    (back,) = APIKey.parse(key.serialize()).caveats()
    assert back == cav
    assert "<encrypted fffe>" in back.describe()
    assert key.refusal(Permission.READ, "b", "x", NOW) is not None


# --- properties -------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
_caveats = st.builds(
    KeyCaveat,
    disallow=st.frozensets(st.sampled_from(list(Permission))).filter(
        lambda d: not d >= BASIC_PERMISSIONS
    ),
    paths=st.lists(
        st.builds(CaveatPath, st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=3
    ).map(tuple),
    not_before=st.none() | _times,
    not_after=st.none(),
    max_object_ttl=st.none()
    | st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3650)),
)
_SECRET = hashlib.sha256(b"property secret").digest()


@settings(max_examples=60, deadline=None)
@given(st.lists(_caveats, max_size=4), _caveats)
def test_restrict_never_drops_a_caveat(chain: list[KeyCaveat], extra: KeyCaveat) -> None:
    key = new_api_key(_SECRET)
    for cav in chain:
        key = key.restrict(cav)
    before = APIKey.parse(key.serialize()).caveats()
    after = APIKey.parse(key.restrict(extra).serialize())
    assert after.caveats()[: len(before)] == before
    stripped = [dataclass_without_nonce(c) for c in after.caveats()]
    assert stripped == [dataclass_without_nonce(c) for c in (*chain, extra)]
    assert after.verify(_SECRET)
    assert after.tails(_SECRET)[: len(before) + 1] == key.tails(_SECRET)


def dataclass_without_nonce(cav: KeyCaveat) -> KeyCaveat:
    return KeyCaveat(cav.disallow, cav.paths, cav.not_before, cav.not_after, cav.max_object_ttl)


@settings(max_examples=60, deadline=None)
@given(
    _caveats,
    st.sampled_from(list(Permission)),
    st.text(max_size=4),
    st.text(max_size=6),
    _times,
)
def test_restriction_never_widens(
    cav: KeyCaveat, op: Permission, bucket: str, path: str, at: datetime
) -> None:
    key = new_api_key(_SECRET)
    narrower = key.restrict(cav)
    if key.refusal(op, bucket, path, at) is not None:
        assert narrower.refusal(op, bucket, path, at) is not None
    if cav.refusal(op, bucket, path, at) is not None:
        assert narrower.refusal(op, bucket, path, at) is not None


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_fuzz_parse_text_only_bad_argument(text: str) -> None:
    with contextlib.suppress(BadArgument):
        APIKey.parse(text)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_parse_base58_payloads_only_bad_argument(payload: bytes) -> None:
    try:
        key = APIKey.parse(base58.b58encode_check(b"\x00" + payload).decode())
    except BadArgument:
        return
    assert APIKey.parse(key.serialize()) == key


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_fuzz_caveat_bytes_only_bad_argument(raw: bytes) -> None:
    mac = Macaroon.new_unrestricted(b"").add_first_party_caveat(raw)
    with contextlib.suppress(BadArgument):
        APIKey(mac)


def test_base58_longer_than_any_key_is_refused_before_decoding() -> None:
    """Decoding costs the square of the length (4 s at 60,000 characters,
    on an event loop): anything past the bound is refused unread."""
    with pytest.raises(BadArgument) as e:
        base58check_decode("2" + "z" * MAX_BASE58, what="api key")
    assert "longer than 8192 characters" in e.value.message
