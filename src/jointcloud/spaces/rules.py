"""What the operator lets user spaces reach: which local directories, which
network endpoints.

Users are not trusted with the server's file system or its network
(docs/security.md). A ``Local`` space must resolve — symlinks included, at
every use — inside one of the operator's local roots, outside the data dir's
own files; a remote endpoint must not resolve to loopback, link-local,
private or otherwise internal addresses, nor to this server's own listeners,
unless the operator allows it. Refusals raise ``SpaceRefused`` naming the rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jointcloud.errors import SpaceRefused


@dataclass(frozen=True)
class SpaceRules:
    # Directories that may hold Local spaces (resolved). Empty: none may.
    local_roots: tuple[Path, ...] = ()
    # The server's data dir (resolved): its files are never a space's, except
    # what lies under a local root inside it (``<data-dir>/spaces``).
    data_dir: Path | None = None
    # --allow-private-endpoints: remote endpoints may be internal addresses.
    private_endpoints: bool = False
    # Allowed although internal: "host", "host:port" or a CIDR ("10.0.0.0/8").
    endpoint_allow: tuple[str, ...] = ()
    # This process's listeners (host, port): never a space's endpoint.
    own_listeners: tuple[tuple[str, int], ...] = ()
    # ``Memory`` spaces live in this process only: for tests and benchmarks.
    memory: bool = False

    @classmethod
    def unrestricted(cls) -> SpaceRules:
        """For tests and benchmarks of one backend: everything allowed."""
        return cls(local_roots=(Path("/"),), private_endpoints=True, memory=True)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _overlap(a: Path, b: Path) -> bool:
    return _inside(a, b) or _inside(b, a)


def resolve_local(raw: str | Path) -> Path:
    """The real location of a (possibly not yet existing) path: symlinks of
    every existing component resolved."""
    text = os.fspath(raw)
    if "\x00" in text:
        raise SpaceRefused("storage.path must not contain NUL")
    return Path(os.path.realpath(text))


def check_local(raw: str | Path, rules: SpaceRules) -> Path:
    """Where a Local space at ``raw`` really is, if the rules allow it there."""
    path = resolve_local(raw)
    if not any(_inside(path, root) for root in rules.local_roots):
        roots = ", ".join(str(r) for r in rules.local_roots) or "none configured"
        raise SpaceRefused(
            f"local space path {str(path)!r} is outside the directories allowed for "
            f"local spaces ({roots}); the operator allows more with "
            "'jcs serve --local-root DIR'"
        )
    data = rules.data_dir
    if data is not None and _overlap(path, data):
        granted = [r for r in rules.local_roots if _inside(r, data) and r != data]
        if not any(_inside(path, r) and path != r for r in granted) or path == data:
            raise SpaceRefused(
                f"local space path {str(path)!r} overlaps the server's data dir "
                f"{str(data)!r}; its files are never a user space's"
            )
    return path


def check_disjoint(path: Path, others: dict[int, Path], kind: str = "local space") -> None:
    """``path`` (resolved) must neither contain nor lie inside another space's
    directory: one user's space can never reach another's files."""
    for space_id, other in others.items():
        if _overlap(path, other):
            raise SpaceRefused(
                f"{kind} path {str(path)!r} overlaps the directory of user space "
                f"{space_id}; spaces never share directories"
            )
