"""``check_endpoint``: remote space endpoints never reach internal networks or
this server itself unless the operator allows it (issue 8). No network: IP
literals, ``localhost`` (resolved locally) and a patched resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from jointcloud.errors import SpaceRefused
from jointcloud.spaces import endpoints
from jointcloud.spaces.endpoints import check_endpoint, classify, parse_endpoint
from jointcloud.spaces.rules import SpaceRules

STRICT = SpaceRules(own_listeners=(("127.0.0.1", 7890),))
HINT = "--allow-private-endpoints or JCS_ENDPOINT_ALLOW"


async def refused(url: str, rules: SpaceRules = STRICT, **kw: Any) -> str:
    with pytest.raises(SpaceRefused) as info:
        await check_endpoint(url, rules, **kw)
    return str(info.value)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1:9000", "loopback"),
        ("http://127.1.2.3/", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.0.0.1", "private"),
        ("http://172.16.0.1", "private"),
        ("https://192.168.1.1:8443/some/path", "private"),
        ("http://169.254.169.254/", "link-local"),
        ("http://[fd00:ec2::254]/", "private"),
        ("http://[fe80::1]", "link-local"),
        ("http://[fec0::1]", "site-local"),
        ("http://100.64.0.1", "CGNAT"),
        ("http://0.0.0.0:9000", "unspecified"),
        ("http://[::]:9000", "unspecified"),
        ("http://[::ffff:127.0.0.1]:9000", "loopback"),
        ("http://[::ffff:169.254.169.254]", "link-local"),
        ("http://[2002:a9fe:a9fe::1]", "link-local"),  # 6to4 around 169.254.169.254
        ("http://[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 around 169.254.169.254
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"),  # Teredo, client 127.0.0.1
        ("http://224.0.0.1", "multicast"),
        ("http://[ff02::1]", "multicast"),
        ("http://localhost:9000", "loopback"),
    ],
)
async def test_internal_addresses_are_refused(url: str, rule: str) -> None:
    msg = await refused(url)
    assert msg.startswith(f"storage.endpoint {url!r} resolves to "), msg
    assert rule in msg and HINT in msg, msg


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8", "https://8.8.8.8:9000/bucket-path", "http://[2001:4860:4860::8888]"]
)
async def test_public_addresses_are_allowed(url: str) -> None:
    await check_endpoint(url, STRICT)


def test_classify_names_the_embedded_address() -> None:
    assert classify(ipaddress.ip_address("8.8.8.8")) is None
    why = classify(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert why is not None and "10.1.2.3" in why and "private" in why


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://8.8.8.8/", "http:// or https://"),
        ("HTTP://8.8.8.8/", "http:// or https://"),
        ("8.8.8.8:9000", "http:// or https://"),
        ("//8.8.8.8", "http:// or https://"),
        ("http://", "host is required"),
        ("http:///path", "host is required"),
        ("http://:9000", "host is required"),
        ("http://user:pass@8.8.8.8/", "user name or password"),
        ("http://8.8.8.8@127.0.0.1/", "user name or password"),
        ("http://8.8.8.8:0", "port"),
        ("http://8.8.8.8:65536", "port"),
        ("http://8.8.8.8:+80", "port"),
        ("http://8.8.8.8:", "port"),
        ("http://127.0.0.1:9000\\@8.8.8.8", "backslash"),
        ("http://8.8.8.8\t:9000", "spaces or control"),
        ("http://8.8.8.8 ", "spaces or control"),
        ("http://exämple.com", "ASCII"),
        ("http://8.8.8.8/?x=1", "query"),
        ("http://8.8.8.8#frag", "fragment"),
        ("http://%31%32%37.0.0.1/", "letters, digits"),
        # numeric hosts the resolver and HTTP clients read differently (the
        # backend's URL parser expands short forms: these were refused as
        # loopback, now before anything resolves them)
        ("http://127.1:9000", "dotted decimal"),
        ("http://010.8.8.8/", "dotted decimal"),
        ("http://0177.0.0.1/", "dotted decimal"),
        ("http://0x7f.1/", "dotted decimal"),
        ("http://2130706433/", "dotted decimal"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[::1/", "']'"),
        ("http://[::1]x/", "':port'"),
        ("", "non-empty"),
    ],
)
async def test_bad_urls_name_the_field(url: str, why: str) -> None:
    msg = await refused(url)
    assert msg.startswith("storage.endpoint"), msg
    assert why in msg, msg
    msg = await refused(url, SpaceRules.unrestricted())  # refused whatever the operator allows
    assert why in msg


async def test_unresolvable_host_is_refused_without_detail() -> None:
    msg = await refused("http://no-such-host.invalid:9000")
    assert msg == "storage.endpoint 'http://no-such-host.invalid:9000': cannot resolve host " + (
        "'no-such-host.invalid'"
    )


async def test_field_name_is_the_callers() -> None:
    msg = await refused("http://10.0.0.1", field="storage.otherEndpoint")
    assert msg.startswith("storage.otherEndpoint 'http://10.0.0.1' resolves to 10.0.0.1")


# -- what the operator allows ------------------------------------------------


def allow(*entries: str) -> SpaceRules:
    return SpaceRules(endpoint_allow=entries, own_listeners=(("127.0.0.1", 7890),))


async def test_allow_list_by_host() -> None:
    await check_endpoint("http://127.0.0.1:9000", allow("127.0.0.1"))
    await check_endpoint("http://127.0.0.1:9001/x", allow("127.0.0.1"))
    assert "loopback" in await refused("http://127.0.0.2:9000", allow("127.0.0.1"))
    # A name allows that name (whatever it resolves to), not its addresses.
    await check_endpoint("http://localhost:9000", allow("localhost"))
    await check_endpoint("http://LocalHost:9000", allow("localhost."))
    assert "loopback" in await refused("http://127.0.0.1:9000", allow("localhost"))
    await check_endpoint("http://[::1]:9000", allow("::1"))


async def test_allow_list_by_host_and_port() -> None:
    rules = allow("127.0.0.1:9000", "[::1]:9000", "localhost:8080")
    await check_endpoint("http://127.0.0.1:9000", rules)
    await check_endpoint("http://[::1]:9000", rules)
    await check_endpoint("http://localhost:8080", rules)
    for url in ("http://127.0.0.1:9001", "http://127.0.0.1", "http://[::1]:9001"):
        assert "loopback" in await refused(url, rules), url
    # The default port of the scheme counts when the URL gives none.
    await check_endpoint("http://10.0.0.5", allow("10.0.0.5:80"))
    assert "private" in await refused("https://10.0.0.5", allow("10.0.0.5:80"))


async def test_allow_list_by_cidr() -> None:
    rules = allow("10.0.0.0/8", "fd00::/8")
    await check_endpoint("http://10.1.2.3:9000", rules)
    await check_endpoint("http://[fd00:ec2::254]", rules)
    await check_endpoint("http://[::ffff:10.9.9.9]", rules)  # the address it carries
    assert "private" in await refused("http://192.168.1.1", rules)
    assert "link-local" in await refused("http://169.254.169.254", rules)


async def test_private_endpoints_allow_internal_but_never_own_listener() -> None:
    rules = SpaceRules(private_endpoints=True, own_listeners=(("127.0.0.1", 7890),))
    for url in ("http://127.0.0.1:9000", "http://10.0.0.1", "http://169.254.169.254"):
        await check_endpoint(url, rules)
    for url in ("http://127.0.0.1:7890", "http://localhost:7890/", "http://0.0.0.0:7890"):
        msg = await refused(url, rules)
        assert "listener of this server" in msg, msg
        assert "port 7890" in msg
    # Nor does an allow-list entry open it.
    msg = await refused("http://127.0.0.1:7890", allow("127.0.0.1", "127.0.0.1:7890"))
    assert "listener of this server" in msg


async def test_own_listener_on_default_port() -> None:
    rules = SpaceRules(private_endpoints=True, own_listeners=(("127.0.0.1", 80),))
    assert "listener" in await refused("http://127.0.0.1/", rules)
    await check_endpoint("https://127.0.0.1/", rules)  # 443: not ours


def _interface_address() -> str | None:
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family == socket.AF_INET and not entry.address.startswith("127."):
                return str(entry.address)
    return None


async def test_wildcard_listener_is_every_local_address() -> None:
    rules = SpaceRules(private_endpoints=True, own_listeners=(("0.0.0.0", 7890),))
    urls = ["http://127.0.0.1:7890", "http://127.9.9.9:7890", "http://0.0.0.0:7890"]
    local = _interface_address()
    if local is not None:
        urls.append(f"http://{local}:7890")
    for url in urls:
        assert "listener of this server" in await refused(url, rules), url
    await check_endpoint("http://127.0.0.1:7891", rules)
    await check_endpoint("http://10.255.255.254:7890", rules)  # not an address of this host
    v6 = SpaceRules(private_endpoints=True, own_listeners=(("::", 7890),))
    assert "listener" in await refused("http://[::1]:7890", v6)


async def test_listener_given_by_name() -> None:
    rules = SpaceRules(private_endpoints=True, own_listeners=(("localhost", 7890),))
    assert "listener" in await refused("http://127.0.0.1:7890", rules)


# -- names resolved through a patched resolver ---------------------------------

Answers = dict[str, list[str]]


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> Answers:
    """Answers of the event loop's resolver for made-up names."""
    answers: Answers = {}
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def fake(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host in answers:
            if not answers[host]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port),
                )
                for a in answers[host]
            ]
        return await real(host, port, *args, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", fake)
    return answers


async def test_every_address_of_a_name_must_be_allowed(dns: Answers) -> None:
    dns["public.example"] = ["8.8.8.8", "2001:4860:4860::8888"]
    dns["mixed.example"] = ["8.8.8.8", "10.0.0.7"]
    dns["meta.example"] = ["fd00:ec2::254"]
    await check_endpoint("https://public.example", STRICT)
    msg = await refused("https://mixed.example", STRICT)
    assert "resolves to 10.0.0.7, a private address" in msg
    assert "private" in await refused("https://meta.example/", STRICT)
    await check_endpoint("https://mixed.example", allow("10.0.0.0/24"))
    await check_endpoint("https://mixed.example", allow("mixed.example"))


async def test_virtual_hosted_bucket_name_is_checked_too(dns: Answers) -> None:
    dns["s3.example"] = ["8.8.8.8"]
    dns["evil.s3.example"] = ["169.254.169.254"]
    dns["good.s3.example"] = ["8.8.4.4"]
    dns["gone.s3.example"] = []
    await check_endpoint("https://s3.example", STRICT, bucket="good")
    await check_endpoint("https://s3.example", STRICT)  # path style: no other name
    msg = await refused("https://s3.example", STRICT, bucket="evil")
    assert "evil.s3.example resolves to 169.254.169.254, a link-local address" in msg
    # A name that does not resolve is not reached by the backend either.
    await check_endpoint("https://s3.example", STRICT, bucket="gone")
    for bad in ("x@127.0.0.1:9#", "a/b", "-x", "x y"):
        msg = await refused("https://s3.example", STRICT, bucket=bad)
        assert msg.startswith("storage.bucket"), msg
    # Allowed by the endpoint's name: its buckets' names are allowed as well.
    await check_endpoint("https://s3.example", allow("s3.example"), bucket="evil")
    await check_endpoint("http://127.0.0.1:9000", allow("127.0.0.1"), bucket="b")


async def test_slow_resolver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def slow(*args: Any, **kw: Any) -> Any:
        await asyncio.Event().wait()  # never answers

    monkeypatch.setattr(loop, "getaddrinfo", slow)
    monkeypatch.setattr(endpoints, "RESOLVE_TIMEOUT", 0.05)
    assert "cannot resolve host 'slow.example'" in await refused("http://slow.example")


def test_parse_keeps_host_and_effective_port() -> None:
    ep = parse_endpoint("https://S3.Example.com/prefix")
    assert (ep.scheme, ep.host, ep.port, ep.explicit_port) == (
        "https",
        "s3.example.com",
        443,
        False,
    )
    ep = parse_endpoint("http://[::FFFF:127.0.0.1]:9000")
    assert (ep.host, ep.port, ep.explicit_port) == ("::ffff:7f00:1", 9000, True)
