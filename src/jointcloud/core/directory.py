"""Packages by name or id, remembered per process.

Every object request names its package; looking it up cost a read
transaction and a join, as much as the rest of a small GET. Here the answer
is kept, with the same bound as a verified key (``KEY_CACHE_SECONDS``):

* In this process a change to any bucket or package (deleted, policy
  changed) forgets every entry at once, after the change commits
  (``changed``). A lookup that began before the change and ends after it
  cannot store its older answer: entries carry the generation they were
  read under.
* Another process sharing the database sees a change within
  ``KEY_CACHE_SECONDS``. Meanwhile a write to a package deleted there fails
  at commit (the commit locks the package row), a read finds no object, and
  an upload may still get the package's previous policy (the recode job
  re-encodes it, as it does every object whose policy changed).

Only packages that exist are remembered: creating one needs no forgetting.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator

from jointcloud.core.keycache import KEY_CACHE_SECONDS
from jointcloud.core.models import Package

DIRECTORY_ENTRIES = 4096


class PackageDirectory:
    def __init__(
        self, seconds: float = KEY_CACHE_SECONDS, entries: int = DIRECTORY_ENTRIES
    ) -> None:
        self.seconds = seconds
        self.entries = entries
        self._cache: OrderedDict[Hashable, tuple[float, Package]] = OrderedDict()
        self.generation = 0

    def get(self, key: Hashable) -> Package | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._cache[key]
            return None
        return hit[1]

    def put(self, key: Hashable, package: Package, generation: int) -> None:
        """Remember ``package``, read under ``generation`` (unless something
        changed since)."""
        if generation != self.generation:
            return
        self._cache[key] = (time.monotonic() + self.seconds, package)
        self._cache.move_to_end(key)
        while len(self._cache) > self.entries:
            self._cache.popitem(last=False)

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around a change to buckets or packages: forget everything once
        it is over (committed or not; forgetting too often is harmless)."""
        try:
            yield
        finally:
            self.changed()

    def changed(self) -> None:
        """A bucket or package changed (and committed): forget everything."""
        self.generation += 1
        self._cache.clear()
