"""What the ``<access>`` of a share URL stands for.

``<access>`` is either the access key id of a record the auth service
registered as public, or a whole access grant. Either way it becomes a
``Principal`` through the auth service's core (``ctx.access``), the one place
that judges grants (satellite, key signature, revocations, passphrase,
expiry); what does not work is a ``Refused`` that says why, with the status
link sharing answers: 404 unknown, 403 not public / not valid yet / not
allowed, 410 expired / revoked.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime

from jointcloud.context import Context
from jointcloud.core.authz import Operation, Principal, allows
from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    DomainError,
    MetadataUnavailable,
    Unauthorized,
    UnknownAccessKey,
)
from jointcloud.keys.credentials import ACCESS_KEY_ID_LENGTH, parse_access_key_id
from jointcloud.keys.grant import Grant, parse_grant
from jointcloud.keys.wire import MAX_BASE58

BASE58 = frozenset(string.digits + string.ascii_letters) - frozenset("0OIl")
# A grant is a few hundred base58 characters (satellite, key, root key); an
# access key id is 28 base32 characters.
MIN_GRANT_LENGTH = 64


def is_access_key_id(text: str) -> bool:
    if len(text) != ACCESS_KEY_ID_LENGTH:
        return False
    try:
        parse_access_key_id(text)
    except BadArgument:
        return False
    return True


def looks_like_grant(text: str) -> bool:
    return MIN_GRANT_LENGTH <= len(text) <= MAX_BASE58 and all(c in BASE58 for c in text)


def is_access(text: str) -> bool:
    """Whether a path segment can be the ``<access>`` of a share URL."""
    return is_access_key_id(text) or looks_like_grant(text)


class Refused(Exception):
    """A share URL that does not work: the status and what to tell the
    visitor (a title and a sentence)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class Shared:
    """An access that works: the principal it stands for and its window."""

    principal: Principal
    not_before: datetime | None
    not_after: datetime | None

    def allows(self, op: Operation, package: str, path: str | None) -> bool:
        return allows(
            self.principal,
            op,
            project_id=self.principal.project_id,
            package=package,
            path=path,
        )


def _window(grant: Grant, now: datetime) -> tuple[datetime | None, datetime | None]:
    not_before = grant.api_key.not_before()
    not_after = grant.api_key.not_after()
    if not_before is not None and now < not_before:
        raise Refused(
            403,
            "Not valid yet",
            f"This link is not valid yet: it opens at {not_before.isoformat()}.",
        )
    if not_after is not None and now > not_after:
        raise Refused(410, "Expired", f"This link expired at {not_after.isoformat()}.")
    return not_before, not_after


def _refusal(exc: DomainError) -> Refused:
    """The page for an error of the auth service's core."""
    message = exc.message
    if isinstance(exc, MetadataUnavailable):  # not the link's fault: try again later
        return Refused(503, "Unavailable", f"This link cannot be opened right now ({message}).")
    if isinstance(exc, UnknownAccessKey):
        return Refused(404, "Unknown link", "This link is unknown: no such access.")
    if isinstance(exc, Unauthorized):
        if "expired" in message:
            return Refused(410, "Expired", f"This link has expired ({message}).")
        if "revoked" in message:
            return Refused(410, "Revoked", "This link was revoked: the key behind it is revoked.")
        if "unknown API key" in message or "disabled" in message:
            return Refused(410, "Revoked", f"This link no longer works ({message}).")
        return Refused(403, "Not valid", f"This link is not valid ({message}).")
    if isinstance(exc, AccessDenied):
        if "not valid before" in message:
            return Refused(403, "Not valid yet", f"This link is not valid yet ({message}).")
        return Refused(403, "Access denied", f"This link does not give access ({message}).")
    if isinstance(exc, BadArgument):
        return Refused(404, "Unknown link", f"This link is not a valid access ({message}).")
    return Refused(403, "Not valid", f"This link is not valid ({message}).")


async def open_access(ctx: Context, access: str) -> Shared:
    """The principal behind ``access`` (``Refused`` naming why not)."""
    now = datetime.now(UTC)
    if is_access_key_id(access):
        try:
            resolved = await ctx.access.resolve(access)
        except DomainError as exc:
            raise _refusal(exc) from None
        if not resolved.public:
            raise Refused(
                403,
                "Not public",
                "This access is not public: it cannot be used for share links.",
            )
        try:
            grant = parse_grant(resolved.grant)
        except BadArgument as exc:
            raise _refusal(exc) from None
        not_before, not_after = _window(grant, now)
        return Shared(resolved.principal, not_before, not_after)
    if not looks_like_grant(access):
        raise Refused(404, "Unknown link", "This link is unknown: no such access.")
    try:
        grant = parse_grant(access)
    except BadArgument as exc:
        raise _refusal(exc) from None
    not_before, not_after = _window(grant, now)
    try:
        principal = await ctx.access.grant_principal(grant)
    except DomainError as exc:
        raise _refusal(exc) from None
    return Shared(principal, not_before, not_after)
