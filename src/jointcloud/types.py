"""Small shared value types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

ByteStream: TypeAlias = AsyncIterator[bytes]

MiB = 1024 * 1024
