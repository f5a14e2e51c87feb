"""What a domain's admins asked to be mailed about (services/domain_alerts.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import Base, UTCDateTime


class DomainAlert(Base):
    """One per domain: where alerts go, and which are wanted."""

    __tablename__ = "domain_alert"

    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320))
    # Mail when more than this many recipients of mail to or from the domain bounced or were
    # refused within an hour; None: never.
    bounce_threshold: Mapped[int | None] = mapped_column(Integer)
    # Mail when one of the domain's mailboxes passes 95% of its storage.
    storage_warning: Mapped[bool] = mapped_column(default=False)
    last_bounce_alert_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class MailboxStorageAlert(Base):
    """A mailbox whose admins were told it passed 95%: told again only after it fell below 90%."""

    __tablename__ = "mailbox_storage_alert"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), primary_key=True)
    alerted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
