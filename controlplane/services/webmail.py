"""The webmail's rules: who may log in (the mail server decides, throttled like the panel) and what may be sent.

A webmail login is checked by the mail server itself (Dovecot, told the browser's address),
so the webmail accepts exactly the passwords a mail client would. Throttling reuses the panel's counts (services/auth.py): a
guess at a mailbox's password counts whichever login form it came through, because the panel
and the webmail guard the same password; a webmail success clears only the webmail's count.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Callable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from controlplane.errors import (
    AuthenticationFailed,
    LetterheadError,
    LoginThrottled,
    NotFound,
    ValidationError,
)
from controlplane.models import AuthEvent, Mailbox
from controlplane.models.base import utcnow
from controlplane.networks import client_network
from controlplane.render import MESSAGE_SIZE_LIMIT
from controlplane.services import auth, mailboxes, passwords, scope
from controlplane.services.scope import Actor
from controlplane.services.storage import format_bytes
from controlplane.validation import normalize_domain

SERVICE = "webmail"
MAX_RECIPIENTS = 100
MAX_SUBJECT_LENGTH = 998
MAX_BODY_BYTES = 5 * 1024 * 1024
# The submission server takes messages up to this size (Postfix's message_size_limit).
MAX_MESSAGE_BYTES = MESSAGE_SIZE_LIMIT
# Unquoted local parts of any address on the Internet: printable ASCII without space, "@", "<", ">",
# "," or quotes. Stricter than RFC 5322 allows, far looser than what Letterhead creates itself.
_FOREIGN_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


class MailServiceUnavailable(LetterheadError):
    """The IMAP or submission server could not be reached or could not answer: the server's fault."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Mail is unavailable right now. Please try again in a few minutes.")
        self.detail = detail


class MessageNotFound(LetterheadError):
    """No such message or folder in the logged-in user's own mailbox."""

    def __init__(self) -> None:
        super().__init__("That message or folder does not exist (it may have been moved or deleted).")


def authenticate_mailbox_user(
    session: Session,
    *,
    address: str,
    password: str,
    client_ip: str,
    user_agent: str,
    mail_server_accepts: Callable[[str, str], bool],
    host_tenant_id: int | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Return the mailbox address when the IMAP server accepts its password; refuse every wrong one alike.

    `mail_server_accepts(address, password)` asks the mail server (Dovecot, naming the client's
    address) and says whether it accepts the login; it raises
    MailServiceUnavailable when the server cannot be asked, and that attempt counts as no guess.
    `host_tenant_id`: the tenant whose brand host the form was sent to (None: the platform's
    host). On a brand host only that tenant's mailboxes may log in: any other address is refused
    as a wrong password would be, without asking the server (it learns nothing of the mailbox).
    Raises LoginThrottled, AuthenticationFailed, MailServiceUnavailable. The attempt's AuthEvent
    is flushed before any error: the caller must COMMIT after catching these, or throttling
    never starts.
    """
    now = now or utcnow()
    typed = address.strip().lower()
    mailbox = mailboxes.find_mailbox(session, typed) if "@" in typed else None
    account = mailbox.address if mailbox is not None else typed[:255]
    event = AuthEvent(
        time=now,
        node=session.info.get("node_name", ""),
        service=SERVICE,
        login=address[:255],
        account=account,
        tenant_id=mailbox.domain.tenant_id if mailbox is not None else None,
        domain_id=mailbox.domain_id if mailbox is not None else None,
        client_ip=client_ip[:64],
        network=client_network(client_ip),
        user_agent=user_agent[:500],
        success=False,
    )
    wait = auth.login_wait_minutes(session, account=account, network=event.network, now=now, service=SERVICE)
    if wait:
        _record(session, event, "throttled")
        raise LoginThrottled(wait)
    if not typed or not password:
        # Nothing to ask the server: a blank form is a slip, not a guess.
        _record(session, event, "blank login")
        raise AuthenticationFailed("Enter your email address and password.")
    if host_tenant_id is not None and (mailbox is None or mailbox.domain.tenant_id != host_tenant_id):
        _record(session, event, "not this brand's" if mailbox is not None else "unknown user")
        raise AuthenticationFailed("Wrong email address or password.")
    try:
        # A password no mailbox can have is not sent to the server: a huge one ties it up.
        accepted = len(password) <= passwords.MAX_VERIFIED_PASSWORD_LENGTH and mail_server_accepts(
            account, password
        )
    except MailServiceUnavailable:
        _record(session, event, "mail unavailable")
        raise
    if not accepted:
        _record(
            session,
            event,
            _refusal_reason(mailbox),
            fingerprint=auth.guess_fingerprint(session, account, "password", password),
        )
        raise AuthenticationFailed("Wrong email address or password.")
    event.success = True
    _record(session, event, "")
    return account


def _refusal_reason(mailbox: Mailbox | None) -> str:
    if mailbox is None:
        return "unknown user"
    return "wrong password" if mailbox.in_service else "inactive"


def _record(session: Session, event: AuthEvent, reason: str, *, fingerprint: str | None = None) -> None:
    event.reason = reason
    event.password_fingerprint = fingerprint
    session.add(event)
    session.flush()


def parse_recipients(text: str, *, field: str) -> list[str]:
    """The addresses in a To or Cc field ("Ann <ann@a.test>, bob@b.test"), checked and without duplicates.

    Raises ValidationError naming the first address that is not one.
    """
    if any(ch in text for ch in "\r\n\0"):
        raise ValidationError("Put all addresses on one line, separated by commas.", field=field)
    addresses: list[str] = []
    for piece in _split_address_list(text):
        _name, address = email.utils.parseaddr(piece)
        # parseaddr answers ("", "") for what it cannot read: that must be refused, not dropped.
        addresses.append(_checked_address(address or piece, field=field))
    unique = list(dict.fromkeys(addresses))
    if len(unique) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} recipients per message.", field=field)
    return unique


def _split_address_list(text: str) -> list[str]:
    """The non-blank entries of a comma-separated list, commas in quotes or <...> not splitting."""
    pieces, current, quoted, angled = [], [], False, False
    for ch in text:
        if ch == '"' and not angled:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angled = True
        elif ch == ">" and not quoted:
            angled = False
        if ch in ",;" and not quoted and not angled:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return [piece.strip() for piece in pieces if piece.strip()]


def _checked_address(address: str, *, field: str) -> str:
    local_part, at, domain = address.rpartition("@")
    if not at or not _FOREIGN_LOCAL_PART.match(local_part) or ".." in local_part:
        raise ValidationError(f"{address!r} is not an email address (name@example.com).", field=field)
    try:
        ascii_domain = normalize_domain(domain, field=field)
    except ValidationError:
        raise ValidationError(
            f"{address!r} is not an email address: {domain!r} is not a domain.", field=field
        ) from None
    return f"{local_part}@{ascii_domain}"


def check_outgoing(*, to: list[str], cc: list[str], subject: str, body: str) -> None:
    """A message may be sent when it has a recipient, a one-line subject and a body of sane size.

    Raises ValidationError.
    """
    if not to and not cc:
        raise ValidationError("Add at least one recipient.", field="to")
    if any(ch in subject for ch in "\r\n\0") or len(subject) > MAX_SUBJECT_LENGTH:
        raise ValidationError(
            f"The subject must be one line of at most {MAX_SUBJECT_LENGTH} characters.", field="subject"
        )
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise ValidationError("The message text is too long (5 MB at most).", field="body")


def check_message_size(size: int) -> None:
    """A whole message (its attachments encoded) the submission server would take. Raises
    ValidationError saying how large it is and what fits."""
    if size > MAX_MESSAGE_BYTES:
        raise ValidationError(
            f"With its attachments the message is {format_bytes(size)}; the mail server takes "
            f"messages up to {format_bytes(MAX_MESSAGE_BYTES)}, which is about "
            f"{format_bytes(MAX_MESSAGE_BYTES * 3 // 4)} of attachments (they grow by a third when "
            "sent). Leave some out, or share them another way.",
            field="attachments",
        )


def own_mailbox(session: Session, address: str) -> tuple[Actor, Mailbox]:
    """The logged-in user's mailbox and the actor that may change its own settings (and nothing
    of its domain's)."""
    mailbox = mailboxes.find_mailbox(session, address)
    if mailbox is None or not mailbox.in_service:
        raise NotFound("This mailbox is not in service.")
    return scope.mailbox_owner(mailbox.id, name=address), mailbox


def sending_identities(session: Session, actor: Actor, mailbox: Mailbox) -> list[str]:
    """The addresses the mailbox's user may send as, their own first: each alias that delivers
    to the mailbox, by the same view Postfix (`smtpd_sender_login_maps`) and the From: check of
    the submission ports decide with, so the webmail offers nothing the server would refuse."""
    if actor.kind != "mailbox" or actor.mailbox_id != mailbox.id:
        raise NotFound("No such mailbox.")
    found = session.scalars(
        text(
            "SELECT local_part || '@' || domain FROM mail_sender_logins WHERE login = :login "
            "ORDER BY domain, local_part"
        ),
        {"login": mailbox.address},
    )
    return [mailbox.address, *(address for address in found if address != mailbox.address)]


def require_sending_identity(session: Session, actor: Actor, mailbox: Mailbox, sender: str) -> str:
    """`sender` if the mailbox's user may send as it (its own address when empty). Raises
    ValidationError."""
    chosen = sender or mailbox.address
    if chosen not in sending_identities(session, actor, mailbox):
        raise ValidationError("You may not send as that address.", field="sender")
    return chosen


def own_login_history(
    session: Session, actor: Actor, mailbox: Mailbox, *, limit: int = 50
) -> list[AuthEvent]:
    """The mailbox's own logins, newest first, every service and the failed ones too (a user
    sees who tried their password, and from where): for its own user only."""
    if actor.kind != "mailbox" or actor.mailbox_id != mailbox.id:
        raise NotFound("No such mailbox.")
    return list(
        session.scalars(
            select(AuthEvent)
            .where(AuthEvent.account == mailbox.address)
            .order_by(AuthEvent.time.desc(), AuthEvent.id.desc())
            .limit(limit)
        )
    )
