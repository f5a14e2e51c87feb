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


class StorageUnavailable(LetterheadError):
    """The mail storage could not take a change (a full disk, a broken folder): the server's fault."""


class NodeUnavailable(StorageUnavailable):
    """The mail node holding a mailbox did not answer in time; nothing was changed there."""


class ConfigRefused(LetterheadError):
    """A rendered configuration failed the daemons' own checks; the previous one stays live."""


class AuthenticationFailed(LetterheadError):
    """A login was refused; the message never says whether the login or the password was wrong."""

    def __init__(self, message: str = "Wrong login or password.", *, field: str | None = None) -> None:
        super().__init__(message, field=field)


class LoginThrottled(LetterheadError):
    """Too many failed logins for the account or from the network; `minutes` until the next try."""

    def __init__(self, minutes: int) -> None:
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"Too many failed logins. Wait {minutes} {unit}, then try again.")
        self.minutes = minutes


class SecondFactorRequired(LetterheadError):
    """The password was right and the account needs its authenticator code as well."""

    def __init__(self) -> None:
        super().__init__("Enter the 6-digit code from your authenticator app.", field="totp_code")
