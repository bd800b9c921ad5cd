"""The server master key and what it protects.

The master key (32 random bytes in ``<data-dir>/master.key``, mode 0600) never
leaves the server. Purpose-specific subkeys are derived with HKDF so that a
wrapped data key can never be confused with a sealed credential.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jointcloud.errors import OperationFailed
from jointcloud.spaces.fileio import fsync_dir

_NONCE = 12


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte on (no umask window;
    set explicitly, so a strange umask changes nothing either)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private(path: Path) -> None:
    """Tighten an existing file to 0600 (one an older start left looser)."""
    if path.exists():
        os.chmod(path, PRIVATE_FILE)


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed; ``path`` itself gets
    mode 0700 whatever the umask, and is tightened to it if it was looser."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)


def _create_whole(path: Path, data: bytes) -> None:
    """Make ``path`` with ``data``, whole or not at all: written and synced
    under a name of its own beside it, then linked into place (never over
    a file another start made meanwhile: that one counts) and the
    directory synced. Written in place, a start killed between creating
    the file and writing it left an empty master.key, and every later
    start refused the data dir (found by review)."""
    staged = path.with_name(f".{path.name}-{secrets.token_hex(8)}")
    write_private(staged, data)
    try:
        try:
            os.link(staged, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (vfat, some network mounts)
            if not path.exists():
                os.rename(staged, path)
        fsync_dir(path.parent)
    finally:
        staged.unlink(missing_ok=True)


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._wrap = AESGCM(self._derive(key, b"jcs data-key wrap v1"))
        self._secret = AESGCM(self._derive(key, b"jcs secret seal v1"))

    @staticmethod
    def _derive(key: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        if not path.exists():
            _create_whole(path, secrets.token_bytes(32))
        make_private(path)
        # What a start killed while making it left (a key never used).
        for leftover in path.parent.glob(f".{path.name}-*"):
            leftover.unlink(missing_ok=True)
        return cls(path.read_bytes())

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    @staticmethod
    def _seal(aead: AESGCM, data: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + aead.encrypt(nonce, data, aad)

    @staticmethod
    def _open(aead: AESGCM, blob: bytes, aad: bytes, what: str) -> bytes:
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except (InvalidTag, ValueError) as exc:
            raise OperationFailed(f"cannot decrypt {what}: wrong master key or damaged") from exc

    def wrap_data_key(self, data_key: bytes) -> bytes:
        return self._seal(self._wrap, data_key, b"data-key")

    def unwrap_data_key(self, blob: bytes) -> bytes:
        return self._open(self._wrap, blob, b"data-key", "object data key")

    def seal_secret(self, secret: bytes, context: str) -> bytes:
        """Encrypt a stored secret (e.g. cloud credentials), bound to ``context``."""
        return self._seal(self._secret, secret, context.encode())

    def open_secret(self, blob: bytes, context: str) -> bytes:
        return self._open(self._secret, blob, context.encode(), "stored credential")
