"""Remote space endpoints must not reach the server's own network.

A user chooses the URL a remote space (S3, OSS, OBS, COS, Azure Blob) talks
to, and the server then connects there: on ``userSpace/test``, on every read
and write, and from the health job every 30 s. Left unchecked that is
server-side request forgery: the user reaches loopback services, the cloud
metadata service (169.254.169.254, fd00:ec2::254), the private network and
this server's own API. ``check_endpoint`` refuses, unless the operator allows
it (``SpaceRules``):

* a URL that is not plainly ``http://`` or ``https://`` + host + optional port
  and path (no userinfo, query, fragment, backslash, white space or non-ASCII
  character: wherever Python's and the backend's URL parsers could disagree on
  the host, the URL is refused rather than guessed at);
* a host that any of its addresses puts on loopback, link-local, private
  (RFC 1918, fc00::/7), shared (CGNAT 100.64.0.0/10), unspecified, multicast,
  site-local, reserved or otherwise non-global ranges, looking through the
  IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4,
  Teredo, NAT64 64:ff9b::/96 and 64:ff9b:1::/48);
* whatever the operator allows, this server's own listeners (a wildcard
  listener stands for every address of this host).

Why by hand: the check has to resolve the name the way the backend will
(``getaddrinfo``, every address, asynchronously and with a time limit) and
decide on each address with rules the operator can widen (host, host:port,
CIDR); no library does that for an arbitrary HTTP client living in Rust.

Residual risk, documented rather than claimed away: the backend (OpenDAL's
HTTP client) resolves the name again whenever it connects, so a DNS answer
that changes after this check (DNS rebinding, or just a short TTL) is not seen
here. That is why the check is not made once at creation but every time a
backend is opened: each test, each transfer task, each start of the server,
and the health job's fresh open after a failed probe. A backend the space pool
keeps open is reused without a new check. The same client also follows HTTP
redirects (a 307 to another address is followed), which this check cannot see
and the Python binding gives no way to turn off: a read so redirected returns
what the other address answered as the object's data. Error messages, at
least, never carry what a remote answered (``opendal_space`` names the step,
the error kind and the HTTP status only).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs in the venv

from jointcloud.errors import SpaceRefused
from jointcloud.spaces.rules import SpaceRules

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT = 5.0
_MAX_URL = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALLOW_HINT = (
    "this server does not allow internal endpoints (the operator can allow them "
    "with --allow-private-endpoints or JCS_ENDPOINT_ALLOW)"
)

# A host name as both parsers read it alike: letters, digits, '.', '-', '_'.
_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
_PORT = re.compile(r"[0-9]{1,5}")
# A bucket the backend puts in front of the host (virtual-hosted style).
_BUCKET_LABELS = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class Endpoint:
    """The parts of an endpoint URL the check needs."""

    scheme: str
    host: str  # as written, lower case, without brackets
    port: int  # explicit, or the scheme's default
    explicit_port: bool


def _show(url: str) -> str:
    return repr(url if len(url) <= 200 else url[:200] + "...")


def parse_endpoint(url: str, field: str = "storage.endpoint") -> Endpoint:
    """Split ``url`` strictly; anything unusual is refused, naming ``field``."""

    def bad(why: str) -> SpaceRefused:
        return SpaceRefused(f"{field} {_show(url)} is not a usable endpoint URL: {why}")

    if not isinstance(url, str) or not url:
        raise SpaceRefused(f"{field} must be a non-empty URL")
    if len(url) > _MAX_URL:
        raise bad(f"longer than {_MAX_URL} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise bad("it must be plain ASCII without spaces or control characters")
    if "\\" in url:
        raise bad("it must not contain a backslash")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        raise bad("it must start with http:// or https://")
    if "?" in rest or "#" in rest:
        raise bad("it must not have a query or a fragment")
    netloc = rest.split("/", 1)[0]
    if "@" in netloc:
        raise bad("it must not contain a user name or password ('user:pass@')")
    if netloc.startswith("["):
        inside, close, after = netloc[1:].partition("]")
        if not close:
            raise bad("an IPv6 address must be closed with ']'")
        try:
            if "%" in inside:
                raise ValueError(inside)
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise bad(f"{inside!r} is not an IPv6 address (zone ids are not accepted)") from None
        if after and not after.startswith(":"):
            raise bad("only ':port' may follow the host")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_ = netloc.partition(":")
        port_text = port_text_ if colon else None
        if not host:
            raise bad("a host is required")
        if not _HOSTNAME.fullmatch(host):
            raise bad(
                "the host may hold only letters, digits, '.', '-' and '_' "
                "(write international names in their xn-- form)"
            )
        host = host.lower()
        if _NUMERIC_HOST.fullmatch(host) and _literal(host) is None:
            # "010.8.8.8", "0x7f.1", "2130706433": the resolver reads them
            # as inet_aton does, HTTP clients refuse or read them otherwise;
            # a guard and a client must never disagree on the address.
            raise bad(f"{host!r} is not an IPv4 address in dotted decimal")
    if port_text is None:
        return Endpoint(scheme, host, _DEFAULT_PORTS[scheme], explicit_port=False)
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise bad("the port must be a number from 1 to 65535")
    return Endpoint(scheme, host, int(port_text), explicit_port=True)


# Hosts made of numbers only (decimal, octal or hex labels): meant as an
# IPv4 address, so they must be one in the canonical form.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (empty: it does not resolve)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        return []
    found: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        addr = _literal(str(sockaddr[0]).split("%", 1)[0])
        if addr is not None:
            found[addr] = None
    return list(found)


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4,
    Teredo client, NAT64), if any."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if any(addr in net for net in _NAT64):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _IPV4_COMPAT and int(addr) > 0xFFFF:  # not ::, ::1 themselves
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _kind(addr: IPAddress) -> str | None:
    """Why ``addr`` is internal ("a loopback address"...), or None if public."""
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_unspecified:
        return "an unspecified address"
    if addr.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if addr.is_multicast:
        return "a multicast address"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return "a shared (CGNAT) address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return "a site-local address"
    if addr.is_private:
        return "a private address"
    if addr.is_reserved:
        return "a reserved address"
    if not addr.is_global:
        return "a non-public address"
    return None


def classify(addr: IPAddress) -> str | None:
    """Why connecting to ``addr`` would reach an internal network, or None."""
    inner = embedded_ipv4(addr)
    if inner is not None:
        why = _kind(inner)
        if why is not None:
            return f"which carries {inner}, {why}"
    return _kind(addr)


def _allowed(entry: str, ep: Endpoint, name: str, addr: IPAddress) -> bool:
    """Does one operator allow-list entry cover ``addr`` reached as ``name``?"""
    entry = entry.strip().lower().rstrip(".")
    if not entry:
        return False
    addrs = [addr] + [a for a in (embedded_ipv4(addr),) if a is not None]
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        net = None
    if net is not None:
        return any(a in net for a in addrs if a.version == net.version)
    port: int | None = None
    if entry.startswith("["):
        inside, _, after = entry[1:].partition("]")
        host = inside
        if after.startswith(":") and after[1:].isdigit():
            port = int(after[1:])
    else:
        host, colon, tail = entry.rpartition(":")
        if not colon or not tail.isdigit():
            host = entry
        else:
            port = int(tail)
    if port is not None and port != ep.port:
        return False
    literal = _literal(host)
    if literal is not None:
        return literal in addrs
    return host in (name, ep.host)


def _this_host(addr: IPAddress) -> bool:
    """Would a connection to ``addr`` land on this machine?"""
    if addr.is_loopback or addr.is_unspecified:
        return True
    return addr in _local_addresses()


def _local_addresses() -> set[IPAddress]:
    found: set[IPAddress] = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addr = _literal(str(entry.address).split("%", 1)[0])
                if addr is not None:
                    found.add(addr)
    return found


async def _own_listener(rules: SpaceRules, addr: IPAddress, port: int) -> bool:
    """Is ``addr``:``port`` one of this server's own listeners?"""
    addrs = [addr] + [a for a in (embedded_ipv4(addr),) if a is not None]
    for host, lport in rules.own_listeners:
        if lport != port:
            continue
        host = host.strip("[]")
        listen = await _resolve(host, lport) if host else []
        wildcard = not host or any(a.is_unspecified for a in listen)
        for a in addrs:
            if not _this_host(a):
                continue
            if wildcard or a.is_unspecified or a in listen:
                return True
    return False


async def _check_name(
    url: str,
    ep: Endpoint,
    name: str,
    rules: SpaceRules,
    field: str,
    what: str,
    *,
    own_ok: bool = False,
) -> None:
    addrs = await _resolve(name, ep.port)
    if not addrs:
        if name != ep.host:
            return  # a name the backend cannot reach either
        raise SpaceRefused(f"{field} {_show(url)}: cannot resolve host {name!r}")
    for addr in addrs:
        if await _own_listener(rules, addr, ep.port):
            if own_ok:
                continue
            raise SpaceRefused(
                f"{field} {_show(url)} {what} {addr} port {ep.port}, a listener of this "
                "server itself; a user space can never point at this server"
            )
        why = classify(addr)
        if why is None or rules.private_endpoints:
            continue
        if any(_allowed(entry, ep, name, addr) for entry in rules.endpoint_allow):
            continue
        raise SpaceRefused(f"{field} {_show(url)} {what} {addr}, {why}; {_ALLOW_HINT}")


async def check_endpoint(
    url: str,
    rules: SpaceRules,
    field: str = "storage.endpoint",
    *,
    bucket: str | None = None,
    own_listeners: bool = False,
) -> None:
    """Raise ``SpaceRefused`` naming ``field`` and the rule if ``url`` may not be used.

    ``own_listeners``: this server's own listeners are allowed (the gateway
    facade calls its own satellite, auth service and S3 endpoint); a user
    space never may point at them.

    ``bucket``: give it when the backend connects to ``<bucket>.<host>``
    (OSS, COS, S3 in virtual-hosted style); that name is then checked too, and
    the bucket must be made of host-name characters.
    """
    ep = parse_endpoint(url, field)
    await _check_name(url, ep, ep.host, rules, field, "resolves to", own_ok=own_listeners)
    if bucket is None or _literal(ep.host) is not None:
        return  # the backend cannot put a bucket in front of an IP address
    if not _BUCKET_LABELS.fullmatch(bucket):
        raise SpaceRefused(
            f"storage.bucket {bucket[:80]!r} is not a valid bucket name: letters, digits, "
            "'.', '-' and '_' only"
        )
    vhost = f"{bucket.lower()}.{ep.host}"
    await _check_name(url, ep, vhost, rules, field, f"with bucket {bucket!r}: {vhost} resolves to")
