"""Probe tier: fault tests against real processes (``jcs serve``, moto S3,
PostgreSQL). Each test builds its own servers; ``tests/conftest.py`` provides
the session PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
