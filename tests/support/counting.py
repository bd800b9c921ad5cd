"""Work counted, not timed: the rows a request or job turns into models.

Scale tests (many buckets, tasks, packages) check that a request builds
the rows it answers with, not every row of the store; the count does not
depend on the machine's speed.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


def rows_built(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    builder: str,
    key: Callable[[Any], Any] = lambda row: row.id,
) -> list[Any]:
    """The ``key`` of every row ``module.builder`` turns into a model from
    now on (a list that grows as they are built)."""
    built: list[Any] = []
    build = getattr(module, builder)

    def counted(row: Any) -> Any:
        built.append(key(row))
        return build(row)

    monkeypatch.setattr(module, builder, counted)
    return built
