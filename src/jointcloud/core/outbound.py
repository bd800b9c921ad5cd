"""URLs a caller makes this server call, outside user spaces.

The gateway facade (seed 003) connects wherever its caller says: the S3
``Endpoint`` header, ``satellite_node_url`` and ``auth_service``. Unchecked,
that is server-side request forgery exactly as a space endpoint would be
(``spaces/endpoints.py``): loopback services, the cloud metadata address, the
private network. The same operator rules apply (``--allow-private-endpoints``,
``JCS_ENDPOINT_ALLOW``), with one difference: this server's own listeners
are allowed, since calling its own satellite, auth service and S3 endpoint
is the facade's ordinary use.

The URL is checked before every call. The HTTP clients resolve the name again
when they connect (DNS rebinding stays a residual risk, as for spaces) and
follow no redirects (httpx by default; botocore follows none for a custom
endpoint).
"""

from __future__ import annotations

from jointcloud.errors import OutboundRefused, SpaceRefused
from jointcloud.spaces.endpoints import check_endpoint
from jointcloud.spaces.rules import SpaceRules


class OutboundGuard:
    def __init__(self, rules: SpaceRules) -> None:
        self.rules = rules

    async def check(self, url: str, field: str) -> None:
        """Raise ``OutboundRefused`` naming ``field`` if ``url`` may not be called."""
        try:
            await check_endpoint(url, self.rules, field, own_listeners=True)
        except SpaceRefused as exc:
            raise OutboundRefused(exc.message) from None
