"""Remote space endpoints must not reach the server's own network.

(Stub: accepts everything; the checks land with the SSRF work of issue 8.)
"""

from __future__ import annotations

from jointcloud.spaces.rules import SpaceRules


async def check_endpoint(url: str, rules: SpaceRules, field: str = "storage.endpoint") -> None:
    """Raise ``SpaceRefused`` naming ``field`` and the rule if ``url`` may not be used."""
    return None
