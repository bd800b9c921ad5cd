"""Garbage collection of blocks nothing references.

A layout becomes garbage when its last reference goes (overwrite, delete,
abandoned multipart part) or when an upload crashed before committing. After
a safety delay — long enough for in-flight reads of the old content to end —
its blocks are deleted from the spaces and then its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from jointcloud.core.blockstore import BlockStore
from jointcloud.meta import layouts
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now


@dataclass
class GcReport:
    layouts: int = 0
    blocks: int = 0


async def collect_garbage(
    db: Database,
    store: BlockStore,
    delay: timedelta,
    progress: Callable[[int, int, str], None] | None = None,
) -> GcReport:
    report = GcReport()
    while True:
        async with db.read() as conn:
            ids = await layouts.garbage(conn, now() - delay)
        if not ids:
            return report
        for layout_id in ids:
            async with db.write() as conn:
                if not await layouts.still_garbage(conn, layout_id):
                    continue
                records = await layouts.load(conn, [layout_id])
                # Blocks first, rows after: a crash in between leaves rows that
                # point at already-deleted blocks, which the next run finishes.
                await store.delete_blocks(records.values())
                await layouts.delete_layouts(conn, [layout_id])
            report.layouts += 1
            report.blocks += sum(len(r.blocks) for r in records.values())
            if progress is not None:
                progress(report.layouts, 0, f"{report.blocks} blocks removed")
