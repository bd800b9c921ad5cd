"""Which bucket and key a request names: path style, or virtual-host style
under a configured ``--s3-domain``."""

from __future__ import annotations

import pytest

from jointcloud.api.s3.request import Target, target_of


@pytest.mark.parametrize(
    ("host", "path", "want"),
    [
        ("s3.test", b"/b/k%20x", Target("b", "k x")),
        ("b.s3.test", b"/k", Target("b", "k", virtual_host=True)),
        ("B.S3.Test:7891", b"/k", Target("b", "k", virtual_host=True)),
        # A fully qualified name (trailing dot) is the same host.
        ("b.s3.test.", b"/k", Target("b", "k", virtual_host=True)),
        ("b.s3.test.:7891", b"/", Target("b", None, virtual_host=True)),
        ("s3.test.", b"/b/k", Target("b", "k")),
        ("b.other.test", b"/x/k", Target("x", "k")),
        ("[::1]:7891", b"/b", Target("b", None)),
    ],
)
def test_target(host: str, path: bytes, want: Target) -> None:
    assert target_of(path, host, ("s3.test",)) == target_of(path, host, ("s3.test.",)) == want
