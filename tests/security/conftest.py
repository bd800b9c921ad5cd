"""Fixtures of the security tests: the functional tests' ``api``, ``bob``
and ``anon`` (pytest loads conftest files only along a test's own path, so
they are imported here; their helpers live beside them in functional/)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "functional"))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e"))  # e2e_support: real servers

from functional.conftest import anon, api, bob  # noqa: F401
