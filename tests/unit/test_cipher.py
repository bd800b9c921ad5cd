"""ChunkCipher: AES-256-GCM with position-derived nonces."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jointcloud.errors import BlockCorrupt
from jointcloud.redundancy.cipher import OVERHEAD, ChunkCipher, new_data_key


def test_new_data_key_is_random_32_bytes() -> None:
    keys = {new_data_key() for _ in range(16)}
    assert len(keys) == 16
    assert all(len(k) == 32 for k in keys)


def test_round_trip_and_overhead() -> None:
    c = ChunkCipher(new_data_key())
    for size in (0, 1, 15, 16, 17, 4096, 100_000):
        data = os.urandom(size)
        sealed = c.seal(3, 7, data)
        assert len(sealed) == size + OVERHEAD
        assert c.open(3, 7, sealed) == data


def test_nonce_is_block_then_segment_big_endian() -> None:
    key = new_data_key()
    sealed = ChunkCipher(key).seal(0x01020304, 0x05060708090A0B0C, b"hello")
    nonce = bytes(range(1, 13))
    assert ChunkCipher.nonce(0x01020304, 0x05060708090A0B0C) == nonce
    assert AESGCM(key).decrypt(nonce, sealed, None) == b"hello"
    assert struct.unpack(">IQ", ChunkCipher.nonce(2, 9)) == (2, 9)


@pytest.mark.parametrize(("block", "segment"), [(1, 0), (0, 1), (1, 1)])
def test_moved_chunk_does_not_authenticate(block: int, segment: int) -> None:
    c = ChunkCipher(new_data_key())
    sealed = c.seal(0, 0, b"x" * 100)
    with pytest.raises(BlockCorrupt):
        c.open(block, segment, sealed)


def test_flipped_bit_truncation_and_wrong_key_are_corrupt() -> None:
    c = ChunkCipher(new_data_key())
    sealed = c.seal(0, 0, b"y" * 64)
    for bad in (
        bytes([sealed[0] ^ 1]) + sealed[1:],
        sealed[:-1] + bytes([sealed[-1] ^ 0x80]),
        sealed[:-1],
        sealed[:10],
        b"",
    ):
        with pytest.raises(BlockCorrupt):
            c.open(0, 0, bad)
    with pytest.raises(BlockCorrupt):
        ChunkCipher(new_data_key()).open(0, 0, sealed)


def test_rejects_bad_key_length() -> None:
    with pytest.raises(ValueError):
        ChunkCipher(b"short")


def test_ciphertext_hides_plaintext() -> None:
    data = b"PLAINTEXT-MARKER" * 64
    assert b"PLAINTEXT-MARKER" not in ChunkCipher(new_data_key()).seal(0, 0, data)
