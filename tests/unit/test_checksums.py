"""Additional checksums are exactly what S3 (and so the AWS SDKs) compute:
the base64 of the big-endian digest. botocore's own implementations
(``botocore.httpchecksum``) are the reference."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import random
from collections.abc import AsyncIterator

import pytest
from botocore import httpchecksum as bc
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.core.models import ChecksumAlgorithm
from jointcloud.meta.rows import checksum_algorithms, checksum_values, to_checksums
from jointcloud.redundancy.cipher import new_data_key
from jointcloud.redundancy.policy import EcPolicy, NonePolicy, Redundancy, RepPolicy
from jointcloud.redundancy.stream import (
    CHECKSUMS,
    BlockRef,
    Checksums,
    encode_whole,
    write_blocks,
)
from jointcloud.spaces.memory import MemorySpace

REFERENCE = {
    "CRC32": bc.CrtCrc32Checksum,
    "CRC32C": bc.CrtCrc32cChecksum,
    "CRC64NVME": bc.CrtCrc64NvmeChecksum,
    "SHA1": bc.Sha1Checksum,
    "SHA256": bc.Sha256Checksum,
}


def botocore_values(data: bytes) -> dict[str, str]:
    out = {}
    for name, cls in REFERENCE.items():
        summer = cls()
        summer.update(data)
        out[name] = summer.b64digest()
    return out


def test_known_values() -> None:
    # CRC check values of "123456789" (CRC catalogue), as S3 shows them.
    ours = Checksums(CHECKSUMS)
    ours.update(b"123456789")
    got = ours.result(hashlib.sha256(b"123456789").digest())
    assert base64.b64decode(got["CRC32"]) == bytes.fromhex("cbf43926")
    assert base64.b64decode(got["CRC32C"]) == bytes.fromhex("e3069283")
    assert got == botocore_values(b"123456789")


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_matches_botocore_in_any_pieces(data: bytes, cuts: list[int]) -> None:
    ours = Checksums(CHECKSUMS)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for lo, hi in itertools.pairwise(points):
        ours.update(memoryview(data)[lo:hi])
    assert ours.result(hashlib.sha256(data).digest()) == botocore_values(data)


def test_only_what_was_asked_and_unknown_refused() -> None:
    summer = Checksums(["CRC32C"])
    summer.update(b"abc")
    assert set(summer.result(b"\0" * 32)) == {"CRC32C"}
    with pytest.raises(ValueError, match="MD5"):
        Checksums(["MD5"])


async def _chunks(data: bytes, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 70000)
        yield data[pos : pos + n]
        pos += n


@pytest.mark.parametrize(
    "policy", [NonePolicy(), RepPolicy(2), EcPolicy(2, 3, 4096)], ids=["none", "rep2", "ec2-3"]
)
async def test_write_blocks_and_encode_whole(policy: Redundancy) -> None:
    data = os.urandom(300_000)
    expected = botocore_values(data)
    spaces = [MemorySpace(f"s{i}") for i in range(policy.width)]
    blocks = [BlockRef(i, s, f"b/{i}", i) for i, s in enumerate(spaces)]
    seg = None if isinstance(policy, EcPolicy) else 65536
    result = await write_blocks(
        _chunks(data, 1), policy, blocks, new_data_key(), segment_size=seg, checksums=CHECKSUMS
    )
    assert result.checksums == expected
    whole, _ = encode_whole(data, policy, new_data_key(), checksums=["CRC32", "SHA256"])
    assert whole.checksums == {k: expected[k] for k in ("CRC32", "SHA256")}
    plain = await write_blocks(
        _chunks(data, 2),
        policy,
        [BlockRef(i, s, f"c/{i}", i) for i, s in enumerate(spaces)],
        new_data_key(),
        segment_size=seg,
    )
    assert plain.checksums == {}
    assert plain.sha256 == result.sha256


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list(ChecksumAlgorithm)),
        st.binary(min_size=4, max_size=32).map(lambda b: base64.b64encode(b).decode()),
    )
)
def test_listed_checksum_names_are_those_of_the_stored_map(
    checksums: dict[ChecksumAlgorithm, str],
) -> None:
    """A listing reads the algorithm names of a stored checksum map without
    decoding it: the same names, in the same order, as decoding it."""
    stored = checksum_values(checksums)["checksums"]
    assert checksum_algorithms(stored) == tuple(to_checksums(stored))
