"""Domain error tree.

Every layer raises these; each protocol maps them to its wire format in one
table (e.g. ``api/jcs/errors.py``). Messages are written for the user and must
never contain secrets.
"""

from __future__ import annotations


class JcsError(Exception):
    """Base of every error the service reports to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadArgument(JcsError):
    """A missing or invalid input; the message names the field."""


class Unauthorized(JcsError):
    """No credentials, or credentials that do not verify."""


class Forbidden(JcsError):
    """Authenticated, but not allowed to do this."""


class NotFound(JcsError):
    """The named thing does not exist (or belongs to someone else)."""


class AlreadyExists(JcsError):
    """The name or path is already taken."""


class TaskNotFound(NotFound):
    """Unknown task id."""


class OperationFailed(JcsError):
    """Anything else, with a message a user can act on."""


class Conflict(OperationFailed):
    """The request conflicts with the state of the user's data (a bucket that
    is not empty, a space that still holds blocks, a destination in the way);
    the message says what to change first."""


class SpaceTestFailed(OperationFailed):
    """A user space failed its test; the message names the step."""


class InsufficientSpaces(OperationFailed):
    """Fewer usable user spaces than a redundancy policy needs."""


class NotEnoughBlocks(OperationFailed):
    """A read found fewer intact blocks than it needs."""

    def __init__(self, message: str, found: int, needed: int) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class SpaceError(OperationFailed):
    """A storage backend failed; raised at the ``spaces`` boundary."""


class SpaceUnavailable(SpaceError):
    """The backend cannot be reached (network, permissions, outage)."""


class SpaceRefused(SpaceError):
    """The operator's rules forbid this space (a local path outside the allowed
    roots, an endpoint on a private network...); the message names the rule."""


class SpaceAuthError(SpaceError):
    """The backend rejected the credentials."""


class BlockNotFound(SpaceError):
    """The key does not exist in the space."""


class BlockCorrupt(SpaceError):
    """Stored bytes failed their integrity check."""
