"""Placement: which user spaces receive the blocks of one upload.

Each block goes to a different space (a space is a failure domain). The
``affinity`` space is tried first; then healthy spaces by measured latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from jointcloud.core.models import UserSpace
from jointcloud.errors import BadArgument, InsufficientSpaces
from jointcloud.redundancy.policy import EcPolicy, Redundancy, RepPolicy


def describe(policy: Redundancy) -> str:
    if isinstance(policy, RepPolicy):
        return f"rep({policy.rep_count})"
    if isinstance(policy, EcPolicy):
        return f"ec({policy.k},{policy.n})"
    return "none"


def choose_spaces(
    spaces: Sequence[UserSpace], policy: Redundancy, affinity: int | None
) -> list[UserSpace]:
    usable = [s for s in spaces if s.state == "Normal"]
    if affinity is not None and not any(s.user_space_id == affinity for s in spaces):
        raise BadArgument(f"affinity: user space {affinity} does not exist")
    usable.sort(
        key=lambda s: (
            s.user_space_id != affinity,
            s.latency_ms if s.latency_ms is not None else float("inf"),
            s.user_space_id,
        )
    )
    need = policy.width
    if len(usable) < need:
        raise InsufficientSpaces(
            f"redundancy {describe(policy)} needs {need} usable user spaces, "
            f"but only {len(usable)} of your {len(spaces)} are available"
        )
    return usable[:need]
