"""The one authorization point: who may do what, decided here and nowhere else.

Every protocol turns its credentials into a ``Principal`` — the user, an
optional project (JCS bucket) the credentials are scoped to, and the caveats
of a restricted key — and core services check each call with ``authorize``.
Caveats follow the published capability-key model (DESIGN §6): each one may
forbid operations, limit the packages and path prefixes reachable, and bound
the time of use; a request must satisfy every caveat (they combine with AND),
so adding a caveat can only narrow access, never widen it. A plain user key is
a principal without caveats.

Listings are the one case where a partly visible scope is allowed: listing a
package's objects under a prefix that only partly overlaps an allowed prefix
is permitted, and the caller filters the results with ``visible``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jointcloud.errors import AccessDenied, OutOfScope


class Operation(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    LIST = "list"
    DELETE = "delete"


@dataclass(frozen=True)
class PathGrant:
    """One allowed place: a package (the S3 bucket) and an object-path prefix
    in it (empty: the whole package)."""

    package: str
    prefix: str = ""


@dataclass(frozen=True)
class Caveat:
    """One restriction of a key, as the published caveat carries it."""

    disallow: frozenset[Operation] = frozenset()
    paths: tuple[PathGrant, ...] = ()  # empty: every package
    not_before: datetime | None = None
    not_after: datetime | None = None

    def describe(self) -> str:
        parts = []
        if self.disallow:
            parts.append("no " + "/".join(sorted(self.disallow)))
        if self.paths:
            places = (f"{g.package}/{g.prefix}" if g.prefix else g.package for g in self.paths)
            parts.append("only " + ", ".join(places))
        if self.not_before is not None:
            parts.append(f"not before {self.not_before.isoformat()}")
        if self.not_after is not None:
            parts.append(f"not after {self.not_after.isoformat()}")
        return "; ".join(parts) or "no restriction"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user, the project their credentials are scoped to
    (None: the whole account) and the caveats of their key."""

    user_id: int
    project_id: int | None = None
    caveats: tuple[Caveat, ...] = field(default=())

    @classmethod
    def user(cls, user_id: int) -> Principal:
        """A plain user key: the whole account, no caveats."""
        return cls(user_id)

    def restricted(self, caveat: Caveat) -> Principal:
        return Principal(self.user_id, self.project_id, (*self.caveats, caveat))


def reaches(prefix: str, path: str) -> bool:
    """Whether a caveat's path prefix reaches ``path``: the key it names and
    the keys below it as a folder (``photos/2024`` reaches ``photos/2024``
    and ``photos/2024/a.jpg``, not ``photos/2024-old/a.jpg``); a prefix that
    ends in ``/`` reaches the keys below it. This is what a grant of the
    published store reaches: it compares encrypted paths, and each segment
    encrypts whole, so a prefix cannot reach into a longer segment. Our
    grants keep paths in clear (the null cipher), and a plain byte prefix
    would let a link to one object read every key that merely begins with it.
    """
    if not path.startswith(prefix):
        return False
    n = len(prefix)
    return n == 0 or n == len(path) or prefix[-1] == "/" or path[n] == "/"


def _path_allowed(grant: PathGrant, path: str | None, op: Operation) -> bool:
    if path is None:
        # The package itself (head, list its contents): a grant inside it
        # reaches part of it; listings are filtered by ``visible``.
        return True
    if reaches(grant.prefix, path):
        return True
    # A listing prefix above the allowed prefix may look, and is filtered.
    return op is Operation.LIST and grant.prefix.startswith(path)


def _caveat_refusal(
    caveat: Caveat,
    op: Operation,
    package: str | None,
    path: str | None,
    at: datetime,
    whole: bool,
) -> AccessDenied | None:
    if op in caveat.disallow:
        return AccessDenied(f"the key's caveat forbids {op} operations ({caveat.describe()})")
    if caveat.not_before is not None and at < caveat.not_before:
        return AccessDenied(f"the key is not valid before {caveat.not_before.isoformat()}")
    if caveat.not_after is not None and at > caveat.not_after:
        return AccessDenied(f"the key expired at {caveat.not_after.isoformat()}")
    if whole and caveat.paths:
        # Acting on the whole bucket or package (delete it, change its policy)
        # needs a caveat that reaches all of it, not a part.
        if package is None:
            return OutOfScope(
                "the key's caveat reaches only some packages; this acts on the whole bucket"
            )
        if not any(g.package == package and not g.prefix for g in caveat.paths):
            return OutOfScope(
                f"the key's caveat reaches only part of package {package!r}; "
                "this acts on the whole package"
            )
    if caveat.paths and package is not None:
        grants = [g for g in caveat.paths if g.package == package]
        if not grants:
            return OutOfScope(
                f"the key's caveat does not reach package {package!r} ({caveat.describe()})"
            )
        if not any(_path_allowed(g, path, op) for g in grants):
            return OutOfScope(
                f"the key's caveat does not reach {package}/{path} ({caveat.describe()})"
            )
    return None


def authorize(
    principal: Principal,
    op: Operation,
    *,
    project_id: int | None = None,
    package: str | None = None,
    path: str | None = None,
    at: datetime | None = None,
    whole: bool = False,
) -> None:
    """Raise ``AccessDenied`` saying which rule refused ``op`` on
    ``project_id`` / ``package`` / ``path`` (None: not narrowed to one);
    ``whole``: the operation acts on all of the project or package named."""
    if (
        principal.project_id is not None
        and project_id is not None
        and project_id != principal.project_id
    ):
        raise OutOfScope("the key is limited to another project")
    when = at or datetime.now(UTC)
    for caveat in principal.caveats:
        refusal = _caveat_refusal(caveat, op, package, path, when, whole)
        if refusal is not None:
            raise refusal


def allows(principal: Principal, op: Operation, **where: object) -> bool:
    try:
        authorize(principal, op, **where)  # type: ignore[arg-type]
    except AccessDenied:
        return False
    return True


def visible(principal: Principal, package: str, path: str) -> bool:
    """Whether one listed object may be shown: every caveat that names paths
    must reach it (a listing allowed over a wider prefix is filtered so)."""
    for caveat in principal.caveats:
        if caveat.paths and not any(
            g.package == package and reaches(g.prefix, path) for g in caveat.paths
        ):
            return False
    return True


def path_prefixes(principal: Principal, package: str) -> list[str] | None:
    """Prefixes every path a listing of ``package`` may show begins with:
    those of the caveat naming the fewest in it, sorted, none inside
    another; None when no caveat names paths (or one reaches the whole
    package). A listing skips the rows between them unread."""
    best: list[str] | None = None
    for caveat in principal.caveats:
        if not caveat.paths:
            continue
        kept: list[str] = []
        for prefix in sorted({g.prefix for g in caveat.paths if g.package == package}):
            if not kept or not prefix.startswith(kept[-1]):
                kept.append(prefix)
        if kept == [""]:
            continue
        if best is None or len(kept) < len(best):
            best = kept
    return best


def visible_packages(principal: Principal, names: Iterable[str]) -> list[str]:
    """The packages a listing of a project may show."""
    out = []
    for name in names:
        if all(not c.paths or any(g.package == name for g in c.paths) for c in principal.caveats):
            out.append(name)
    return out


def require_account(principal: Principal) -> None:
    """Account-level operations (user spaces, ...) need the whole account:
    a key scoped to a project or carrying caveats is refused."""
    if principal.project_id is not None or principal.caveats:
        raise AccessDenied("this needs an account key, not a key restricted to a project")
