from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Integer, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, byte_count, created_at, dns_name, int_pk
from controlplane.validation import domain_to_unicode

if TYPE_CHECKING:
    from controlplane.models.alias import Alias
    from controlplane.models.brand import Brand
    from controlplane.models.dkim_key import DkimKey
    from controlplane.models.mailbox import Mailbox
    from controlplane.models.tenant import Tenant


class Domain(Base):
    """A mail domain of a tenant, stored as its IDNA A-label form."""

    __tablename__ = "domain"
    __table_args__ = (
        CheckConstraint("max_mailboxes >= 0", name="max_mailboxes_not_negative"),
        CheckConstraint("max_aliases >= 0", name="max_aliases_not_negative"),
        CheckConstraint("max_mailbox_bytes > 0", name="max_mailbox_positive"),
        CheckConstraint("mailbox_count >= 0", name="mailbox_count_not_negative"),
        CheckConstraint("alias_count >= 0", name="alias_count_not_negative"),
        CheckConstraint("allocated_bytes >= 0", name="allocated_bytes_not_negative"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    name: Mapped[dns_name] = mapped_column(unique=True)
    max_mailboxes: Mapped[int] = mapped_column(Integer)
    max_aliases: Mapped[int] = mapped_column(Integer)
    max_mailbox_bytes: Mapped[byte_count]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]
    # None: the platform's own host serves this domain (settings.hostname).
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id", ondelete="SET NULL"), index=True)
    # Kept by the database itself: triggers on mailbox and alias (migration 0003) update
    # them in the same statement as the row, so a page never counts 100,000 rows. Never
    # assigned by the ORM; read them with a query (domains.domain_counts), since a Domain
    # loaded earlier in the session does not see the triggers' updates.
    mailbox_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    alias_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    allocated_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Spam thresholds set by a full admin; None: the installation's defaults (settings).
    spam_reject_score: Mapped[float | None] = mapped_column(Float)
    spam_junk_score: Mapped[float | None] = mapped_column(Float)
    # Mail from a sender not seen lately is deferred once (rspamd's Letterhead policy), for
    # every recipient of a message naming this domain.
    greylisting: Mapped[bool] = mapped_column(server_default=text("0"), default=False)

    tenant: Mapped[Tenant] = relationship(back_populates="domains")
    brand: Mapped[Brand | None] = relationship(back_populates="domains")
    mailboxes: Mapped[list[Mailbox]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    aliases: Mapped[list[Alias]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    dkim_keys: Mapped[list[DkimKey]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True, order_by="DkimKey.id"
    )

    @property
    def in_service(self) -> bool:
        """It receives mail: it and its tenant are active."""
        return self.active and self.tenant.active

    @property
    def display_name(self) -> str:
        return domain_to_unicode(self.name)
