"""Helpers of the core service suite (shared with the protocol adapters' tests)."""

from __future__ import annotations

from dataclasses import dataclass

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.models import Bucket


@dataclass
class World:
    """An admin with one project (JCS bucket) and another user with one."""

    ctx: Context
    alice: Principal
    project: Bucket
    bob: Principal
    bob_project: Bucket
