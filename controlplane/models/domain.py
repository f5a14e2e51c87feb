from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, byte_count, created_at, dns_name, int_pk
from controlplane.validation import domain_to_unicode

if TYPE_CHECKING:
    from controlplane.models.alias import Alias
    from controlplane.models.mailbox import Mailbox
    from controlplane.models.tenant import Tenant


class Domain(Base):
    """A mail domain of a tenant, stored as its IDNA A-label form."""

    __tablename__ = "domain"
    __table_args__ = (
        CheckConstraint("max_mailboxes >= 0", name="max_mailboxes_not_negative"),
        CheckConstraint("max_aliases >= 0", name="max_aliases_not_negative"),
        CheckConstraint("max_mailbox_bytes > 0", name="max_mailbox_positive"),
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

    tenant: Mapped[Tenant] = relationship(back_populates="domains")
    mailboxes: Mapped[list[Mailbox]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )
    aliases: Mapped[list[Alias]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def display_name(self) -> str:
        return domain_to_unicode(self.name)
