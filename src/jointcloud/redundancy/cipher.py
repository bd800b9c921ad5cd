"""Encryption at rest of every stored chunk: AES-256-GCM under a per-layout data key.

Every byte that lands in a user's cloud is ciphertext (DESIGN §6), and the GCM tag
doubles as the chunk's integrity check, so a corrupt or truncated block is detected
on read without a separate hash.

Nonces are derived, not random: 4-byte block index + 8-byte segment index, big
endian. That is safe because a data key is generated for exactly one stored layout
(a new upload, or a re-encode, always gets a fresh key), so a (key, nonce) pair is
never reused. Binding the position into the nonce also means a chunk moved to
another block or another offset fails authentication.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jointcloud.errors import BlockCorrupt

KEY_LEN = 32
# Bytes GCM adds to every sealed chunk (the tag).
OVERHEAD = 16

_NONCE = struct.Struct(">IQ")


def new_data_key() -> bytes:
    """A fresh random AES-256 key for one stored layout."""
    return os.urandom(KEY_LEN)


class ChunkCipher:
    """Seals and opens the chunks of one layout; cheap to create, thread-safe."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != KEY_LEN:
            raise ValueError(f"data key must be {KEY_LEN} bytes")
        self._aead = AESGCM(data_key)

    @staticmethod
    def nonce(block_index: int, segment_index: int) -> bytes:
        return _NONCE.pack(block_index, segment_index)

    def seal(self, block_index: int, segment_index: int, plaintext: bytes) -> bytes:
        """Ciphertext of ``plaintext`` followed by its 16-byte tag."""
        return self._aead.encrypt(self.nonce(block_index, segment_index), plaintext, None)

    def open(self, block_index: int, segment_index: int, data: bytes | memoryview) -> bytes:
        """Plaintext of a sealed chunk; ``BlockCorrupt`` if it does not authenticate."""
        try:
            return self._aead.decrypt(self.nonce(block_index, segment_index), data, None)
        except InvalidTag:
            raise BlockCorrupt(
                f"chunk {segment_index} of block {block_index} failed its integrity check"
            ) from None
