"""What the catalog modules share: which object rows are visible."""

from __future__ import annotations

from jointcloud.meta import tables as t

# Objects committed: not an upload's placeholder (``writes.create_placeholder``).
visible = t.objects.c.committed.is_(True)
