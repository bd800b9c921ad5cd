"""Placement: which user spaces receive blocks, and under which keys.

The one rule, for an upload, a repair and a drain alike: each block of a
layout goes to a different space (a space is a failure domain), and only to a
``Normal`` space. Among those, the ``affinity`` space comes first, then the
spaces that received fewest blocks in the current pass (a drain spreads its
copies), then the lowest measured latency (unmeasured last), then the lowest
id.

A block's key is ``blocks/<2 hex>/<name>.<index>``: the name is random, the
same for every block of one upload, and fresh for every copy or rebuild, so a
new block never collides with an old one or another mover's.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence

from jointcloud.core.models import SpaceState, UserSpace
from jointcloud.errors import BadArgument, InsufficientSpaces
from jointcloud.redundancy.policy import EcPolicy, Redundancy, RepPolicy


def describe(policy: Redundancy) -> str:
    if isinstance(policy, RepPolicy):
        return f"rep({policy.rep_count})"
    if isinstance(policy, EcPolicy):
        return f"ec({policy.k},{policy.n})"
    return "none"


def block_key(name: str, index: int) -> str:
    """The key of block ``index`` of the upload called ``name``."""
    return f"blocks/{name[:2]}/{name}.{index}"


def new_name() -> str:
    """A fresh random name for the blocks of one upload."""
    return uuid.uuid4().hex


def new_block_key(index: int) -> str:
    """A fresh key for one block (a copy or a rebuild): never an existing one."""
    return block_key(new_name(), index)


def usable(spaces: Iterable[UserSpace]) -> list[UserSpace]:
    """The spaces that may receive blocks."""
    return [s for s in spaces if s.state == SpaceState.NORMAL]


def candidates(
    spaces: Iterable[UserSpace],
    *,
    exclude: Collection[int] = (),
    affinity: int | None = None,
    load: Mapping[int, int] | None = None,
) -> list[UserSpace]:
    """The usable spaces not in ``exclude`` (ids of spaces that hold a block of
    the layout already), best first by the rule above; ``load`` counts the
    blocks placed on each space so far in this pass."""
    counts = load or {}
    return sorted(
        (s for s in usable(spaces) if s.user_space_id not in exclude),
        key=lambda s: (
            s.user_space_id != affinity,
            counts.get(s.user_space_id, 0),
            s.latency_ms if s.latency_ms is not None else float("inf"),
            s.user_space_id,
        ),
    )


def choose_spaces(
    spaces: Sequence[UserSpace], policy: Redundancy, affinity: int | None
) -> list[UserSpace]:
    """One space per block of a new upload under ``policy``."""
    if affinity is not None and not any(s.user_space_id == affinity for s in spaces):
        raise BadArgument(f"affinity: user space {affinity} does not exist")
    ranked = candidates(spaces, affinity=affinity)
    need = policy.width
    if len(ranked) < need:
        raise InsufficientSpaces(
            f"redundancy {describe(policy)} needs {need} usable user spaces, "
            f"but only {len(ranked)} of your {len(spaces)} are available"
        )
    return ranked[:need]
