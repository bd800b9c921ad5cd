"""URLs a caller hands the facade (``Endpoint``, ``satellite_node_url``,
``auth_service``): one rule for a URL given without its scheme."""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

from jointcloud.api.gateway.envelope import GatewayError


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def service_url(raw: str, what: str) -> str:
    """``raw`` as an ``http(s)://`` base URL without a trailing ``/``. A bare
    ``host:port`` (or a satellite's ``nodeid@host:port``) gets ``http://`` on
    loopback and ``https://`` anywhere else: keys and secrets do not cross a
    network in clear unless the caller writes ``http://`` itself."""
    text = raw.strip()
    try:
        if "://" not in text:
            text = text.rsplit("@", 1)[-1]
            host = urlsplit("//" + text).hostname or ""
            text = ("http://" if _loopback(host) else "https://") + text
        split = urlsplit(text)
    except ValueError as exc:  # an unbalanced "[", an invalid IPv6 address
        raise GatewayError(f"{what} is not a valid URL: {exc}") from None
    if split.scheme not in ("http", "https") or not split.netloc:
        raise GatewayError(f"{what} must be an http(s) URL")
    return text.rstrip("/")
