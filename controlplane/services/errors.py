"""Typed errors raised by the services.

Each carries a message a person understands; the web layer, the API and the CLI
turn them into a form error, a problem+json response or a line on stderr.
"""

from __future__ import annotations


class LetterheadError(Exception):
    """Base class of every error a service raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(LetterheadError):
    """Input that cannot be accepted as given (a malformed name, a size out of range)."""


class NotFound(LetterheadError):
    """The object does not exist, or the actor may not see it (no existence leaks)."""


class AlreadyExists(LetterheadError):
    """A name that must be unique is already taken."""


class NotInScope(LetterheadError):
    """The actor may not act on this object."""


class LimitReached(LetterheadError):
    """A count limit (mailboxes or aliases in a domain) would be exceeded."""


class PoolExhausted(LetterheadError):
    """The tenant's storage pool cannot cover the requested mailbox storage."""


class ConfigRefused(LetterheadError):
    """A rendered configuration failed the daemons' own checks; the previous one stays live."""
