from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, int_pk, utc_time


class AuthEvent(Base):
    """One login attempt to any service, successful or not.

    Throttling is computed from these rows rather than from a table of its own: every
    attempt is recorded here anyway, so a second table would only duplicate it. A failed
    guess carries `password_fingerprint`, a keyed HMAC of the account and the guessed
    password (or second-factor code), never the password itself, so that an identical
    wrong guess repeated counts once; attempts that guessed nothing (throttled, inactive,
    success) have none. `account` is the canonical login the attempt was counted against
    and `network` the client's /24 (IPv4) or /64 (IPv6).

    `service` is "admin" for the panel's own logins; "smtp", "imap", "pop3" and "sieve" rows
    are read from the mail daemons' logs (controlplane/logs/ingest.py) and carry no fingerprint,
    so they never count as guesses against the panel's throttle. "webmail" rows are the webmail's
    own logins (services/webmail.py); they carry fingerprints and count like the panel's, as both
    forms guard the same mailbox password.
    """

    __tablename__ = "auth_event"
    __table_args__ = (
        # Read newest first, id breaking ties: see AuditEntry.
        Index("ix_auth_event_tenant_id_time", "tenant_id", "time", "id"),
        Index("ix_auth_event_domain_id_time", "domain_id", "time", "id"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    time: Mapped[utc_time] = mapped_column(index=True)
    service: Mapped[str] = mapped_column(String(20))
    login: Mapped[str] = mapped_column(String(255), index=True)
    account: Mapped[str] = mapped_column(String(255), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id", ondelete="SET NULL"))
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domain.id", ondelete="SET NULL"))
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    network: Mapped[str] = mapped_column(String(64), index=True)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    success: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(50), default="")
    password_fingerprint: Mapped[str | None] = mapped_column(String(32))
    # The mail node whose daemon or web app saw it; "" on a single machine.
    node: Mapped[str] = mapped_column(String(63), default="", server_default="")
