"""Logins to the admin panel: full admins and domain-admin mailboxes, a second factor, throttling.

Every attempt is recorded as an AuthEvent, and throttling is counted from those rows, so that
it stops the guesser, not the account holder. Within 15 minutes:

- 5 failed guesses at one account from one network (IPv4 /24, IPv6 /64) stop that network
  trying that account;
- 20 failed guesses from one network, at any accounts, stop that network;
- 25 failed guesses at one account from anywhere (a guesser spread over many networks) stop
  networks the account has never logged in from; a network it logged in from before (within
  90 days, through any service) is the holder's, and still gets in.

A throttled attempt is refused, right password or not, until old guesses leave the window.
A guess repeated identically counts once, so a user retrying the same typo is not locked
out. A successful login clears its account's count from that network, never its network's.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import math
import secrets
import struct
from urllib.parse import quote

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from controlplane.errors import (
    AuthenticationFailed,
    LoginThrottled,
    SecondFactorRequired,
    ValidationError,
)
from controlplane.models import Admin, AuthEvent, Mailbox
from controlplane.models.base import utcnow
from controlplane.networks import client_network
from controlplane.services import admins, audit, mailboxes, passwords, scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_address

SERVICE = "admin"
WINDOW = dt.timedelta(minutes=15)
ACCOUNT_FAILURE_LIMIT = 5
NETWORK_FAILURE_LIMIT = 20
ACCOUNT_WIDE_FAILURE_LIMIT = 25
KNOWN_NETWORK_MEMORY = dt.timedelta(days=90)
TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class _Account:
    """What a typed login names: a full admin, a mailbox, or nobody (`key` is then the login)."""

    key: str
    admin: Admin | None = None
    mailbox: Mailbox | None = None

    @property
    def exists(self) -> bool:
        return self.admin is not None or self.mailbox is not None

    @property
    def tenant_id(self) -> int | None:
        if self.admin is not None:
            return self.admin.tenant_id
        return self.mailbox.domain.tenant_id if self.mailbox is not None else None

    @property
    def domain_id(self) -> int | None:
        return self.mailbox.domain_id if self.mailbox is not None else None

    @property
    def password_hash(self) -> str:
        if self.admin is not None:
            return self.admin.password_hash
        if self.mailbox is not None:
            return self.mailbox.password_hash
        # Checking a real hash for unknown logins too takes as long, so timing reveals no accounts.
        return _unknown_account_hash()

    def refusal(self) -> str:
        """Why an existing account's correct password still does not open the admin panel, or ""."""
        if self.admin is not None:
            return "" if self.admin.in_service else "inactive"
        assert self.mailbox is not None
        if not self.mailbox.is_domain_admin:
            return "not an admin"
        return "" if self.mailbox.in_service else "inactive"

    def actor(self) -> Actor:
        if self.admin is not None:
            return scope.tenant_admin(self.admin.tenant_id, name=f"admin:{self.admin.login}")
        assert self.mailbox is not None
        domain = self.mailbox.domain
        return scope.domain_admin(domain.tenant_id, domain.id, name=self.mailbox.address)


def authenticate_admin(
    session: Session,
    *,
    login: str,
    password: str,
    client_ip: str,
    user_agent: str,
    totp_code: str | None = None,
    host_tenant_id: int | None = None,
    now: dt.datetime | None = None,
) -> Actor:
    """Return the actor for a correct admin-panel login; refuse every wrong one alike.

    `login` is a full admin's login or the address of an active domain-admin mailbox.
    `host_tenant_id`: the tenant whose brand host the form came to (None: the platform's host),
    where only that tenant's admins may log in; anyone else is refused like a wrong password.
    Raises LoginThrottled, AuthenticationFailed or SecondFactorRequired. Each attempt's
    AuthEvent is flushed before any error is raised: the caller must COMMIT after catching
    these errors, not roll back, or the failure is forgotten and throttling never starts.
    """
    now = now or utcnow()
    account = _find_account(session, login)
    event = AuthEvent(
        time=now,
        node=session.info.get("node_name", ""),
        service=SERVICE,
        login=login[:255],
        account=account.key,
        tenant_id=account.tenant_id,
        domain_id=account.domain_id,
        client_ip=client_ip[:64],
        network=client_network(client_ip),
        user_agent=user_agent[:500],
        success=False,
    )
    wait = login_wait_minutes(session, account=event.account, network=event.network, now=now)
    if wait:
        _record(session, event, "throttled")
        raise LoginThrottled(wait)
    password_right = passwords.verify_password(password, account.password_hash)
    if account.exists and host_tenant_id is not None and account.tenant_id != host_tenant_id:
        _record(session, event, "not this brand's")
        raise AuthenticationFailed()
    if not (account.exists and password_right):
        reason = "wrong password" if account.exists else "unknown user"
        _record(
            session, event, reason, fingerprint=guess_fingerprint(session, account.key, "password", password)
        )
        raise AuthenticationFailed()
    refusal = account.refusal()
    if refusal:
        _record(session, event, refusal)
        raise AuthenticationFailed()
    secret = account.admin.totp_secret if account.admin is not None else None
    if secret:
        code = "".join((totp_code or "").split())
        if not code:
            _record(session, event, "second factor required")
            raise SecondFactorRequired()
        if not verify_totp(secret, code, now):
            _record(
                session,
                event,
                "second factor wrong",
                fingerprint=guess_fingerprint(session, account.key, "totp", code),
            )
            # The password is known to be right by now, so naming the code leaks nothing.
            raise AuthenticationFailed("Wrong authenticator code.", field="totp_code")
    event.success = True
    _record(session, event, "")
    return account.actor()


def record_oversized_login(
    session: Session, *, service: str, client_ip: str, user_agent: str, now: dt.datetime | None = None
) -> None:
    """Count a login too large to be one (a huge password sent to tie up the server) against its
    network, as a guess: it is refused unread, so it names no account."""
    now = now or utcnow()
    event = AuthEvent(
        time=now,
        node=session.info.get("node_name", ""),
        service=service,
        login="",
        account="",
        client_ip=client_ip[:64],
        network=client_network(client_ip),
        user_agent=user_agent[:500],
        success=False,
    )
    # Each counts as a distinct guess: nothing of it was read to tell two apart.
    _record(session, event, "oversized request", fingerprint=secrets.token_hex(16))


def login_wait_minutes(
    session: Session, *, account: str, network: str, now: dt.datetime, service: str = SERVICE
) -> int:
    """Whole minutes until `account` may try again from `network`; 0 when it may now.

    Guesses count whichever login form made them (the panel and the webmail guard the same
    mailbox password); only a success through `service` itself clears the account's count.
    """
    since = now - WINDOW
    last_success_id = session.scalar(
        select(func.max(AuthEvent.id)).where(
            AuthEvent.account == account,
            AuthEvent.network == network,
            AuthEvent.success.is_(True),
            AuthEvent.time > since,
            # An IMAP or SMTP login read from the mail logs must not reset the panel's counter.
            AuthEvent.service == service,
        )
    )
    from_here = _guess_times(
        session,
        AuthEvent.account == account,
        AuthEvent.network == network,
        AuthEvent.id > (last_success_id or 0),
        since=since,
    )
    network_guesses = _guess_times(session, AuthEvent.network == network, since=since)
    wait = max(
        _minutes_until_below(from_here, ACCOUNT_FAILURE_LIMIT, now),
        _minutes_until_below(network_guesses, NETWORK_FAILURE_LIMIT, now),
    )
    if wait or _is_known_network(session, account=account, network=network, now=now):
        return wait
    everywhere = _guess_times(session, AuthEvent.account == account, since=since)
    return _minutes_until_below(everywhere, ACCOUNT_WIDE_FAILURE_LIMIT, now)


def _is_known_network(session: Session, *, account: str, network: str, now: dt.datetime) -> bool:
    """Whether `account` logged in from `network` before: then that network is its holder's."""
    return (
        session.scalar(
            select(AuthEvent.id)
            .where(
                AuthEvent.account == account,
                AuthEvent.network == network,
                AuthEvent.success.is_(True),
                AuthEvent.time > now - KNOWN_NETWORK_MEMORY,
            )
            .limit(1)
        )
        is not None
    )


def _find_account(session: Session, login: str) -> _Account:
    typed = login.strip().lower()
    admin = admins.find_admin(session, typed)
    if admin is not None:
        return _Account(key=admin.login, admin=admin)
    mailbox = mailboxes.find_mailbox(session, typed)
    if mailbox is not None:
        return _Account(key=mailbox.address, mailbox=mailbox)
    try:
        key = normalize_address(typed)
    except ValidationError:
        key = typed
    return _Account(key=key[:255])


def _record(session: Session, event: AuthEvent, reason: str, *, fingerprint: str | None = None) -> None:
    event.reason = reason
    event.password_fingerprint = fingerprint
    session.add(event)
    session.flush()


def guess_fingerprint(session: Session, account: str, kind: str, guess: str) -> str:
    """A keyed digest of one guess at one account: equal guesses match, the guess stays secret."""
    key = str(session.info.get("auth_secret") or "letterhead").encode()
    message = "\0".join((kind, account, str(guess))).encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _guess_times(session: Session, *criteria: ColumnElement[bool], since: dt.datetime) -> list[dt.datetime]:
    """The latest time of each distinct failed guess since `since`, oldest first."""
    query = (
        select(func.max(AuthEvent.time))
        .where(
            *criteria,
            AuthEvent.success.is_(False),
            AuthEvent.password_fingerprint.is_not(None),
            AuthEvent.time > since,
        )
        .group_by(AuthEvent.password_fingerprint)
    )
    return sorted(session.scalars(query))


def _minutes_until_below(guess_times: list[dt.datetime], limit: int, now: dt.datetime) -> int:
    if len(guess_times) < limit:
        return 0
    # Once this guess leaves the window, fewer than `limit` remain.
    allowed_at = guess_times[len(guess_times) - limit] + WINDOW
    return max(1, math.ceil((allowed_at - now).total_seconds() / 60))


@functools.cache
def _unknown_account_hash() -> str:
    return passwords.hash_password(secrets.token_urlsafe(16))


# Second factor: RFC 6238 TOTP (HMAC-SHA1, 30-second steps, 6 digits), as authenticator apps use.


def new_totp_secret() -> str:
    """A fresh 160-bit secret in unpadded base32, the form authenticator apps take."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp_code(secret: str, at: dt.datetime) -> str:
    """The code an authenticator app shows for `secret` at the moment `at`."""
    counter = int(at.timestamp()) // TOTP_STEP_SECONDS
    digest = hmac.new(_decode_totp_secret(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**TOTP_DIGITS:0{TOTP_DIGITS}d}"


def verify_totp(secret: str, code: str, at: dt.datetime) -> bool:
    """A code is accepted for its own 30-second step and one step either side (clock drift)."""
    step = dt.timedelta(seconds=TOTP_STEP_SECONDS)
    return any(hmac.compare_digest(totp_code(secret, at + drift * step), code) for drift in (-1, 0, 1))


def totp_provisioning_uri(secret: str, *, login: str, issuer: str = "Letterhead") -> str:
    """The otpauth:// URI an authenticator app reads from a QR code."""
    label = quote(f"{issuer}:{login}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"


def enable_totp(
    session: Session, actor: Actor, admin: Admin, secret: str, code: str, *, now: dt.datetime | None = None
) -> Admin:
    """Require a second factor for `admin`, once a current code proves the app holds `secret`.

    Any full admin of the tenant may do it, as they may delete and create admins anyway.
    Raises NotFound, NotInScope, ValidationError.
    """
    scope.require_full_admin(actor, admin.tenant)
    secret = _normalize_totp_secret(secret)
    if not verify_totp(secret, "".join(code.split()), now or utcnow()):
        raise ValidationError(
            "That code does not match: check the device's clock and enter the code shown now.",
            field="totp_code",
        )
    admin.totp_secret = secret
    session.flush()
    audit.record_change(session, actor, "admin.totp_enable", admin.login, tenant_id=admin.tenant_id)
    return admin


def disable_totp(session: Session, actor: Actor, admin: Admin) -> Admin:
    """Drop `admin`'s second factor (a lost phone); the tenant's full admins or the operator may."""
    scope.require_full_admin(actor, admin.tenant)
    admin.totp_secret = None
    session.flush()
    audit.record_change(session, actor, "admin.totp_disable", admin.login, tenant_id=admin.tenant_id)
    return admin


def _normalize_totp_secret(secret: str) -> str:
    cleaned = "".join(secret.split()).upper().rstrip("=")
    try:
        key = _decode_totp_secret(cleaned)
    except (binascii.Error, ValueError):
        key = b""
    if not 10 <= len(key) <= 40:
        raise ValidationError(
            "That is not an authenticator secret (base32, 16 to 64 characters).", field="totp_secret"
        )
    return cleaned


def _decode_totp_secret(secret: str) -> bytes:
    cleaned = "".join(secret.split()).upper().rstrip("=")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
