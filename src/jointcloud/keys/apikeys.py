"""Plain v1 API keys: a random token shown once; only its SHA-256 is stored.

The macaroon keys of the gateway API build on the same user table later; a
plain key is the bootstrap credential (``root.key``).
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "jcs_"


def new_api_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
