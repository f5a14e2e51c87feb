from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, byte_count, created_at, int_pk

if TYPE_CHECKING:
    from controlplane.models.admin import Admin
    from controlplane.models.domain import Domain

GIB = 1024**3


class Tenant(Base):
    """A reseller account: its domains share one storage pool."""

    __tablename__ = "tenant"
    __table_args__ = (
        CheckConstraint("storage_pool_bytes >= 0", name="pool_not_negative"),
        CheckConstraint("max_mailbox_bytes > 0", name="max_mailbox_positive"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    storage_pool_bytes: Mapped[byte_count]
    max_mailbox_bytes: Mapped[byte_count] = mapped_column(default=20 * GIB)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]
    # Outbound limits, enforced at RCPT by the sending limits service (daemons/send_limits.py): a
    # compromised password sends a few hundred messages, not a hundred thousand. Positive
    # (services/tenants.py checks; a database constraint would need a rebuild of the table).
    mailbox_hourly_messages: Mapped[int] = mapped_column(Integer, server_default=text("300"))
    tenant_hourly_messages: Mapped[int] = mapped_column(Integer, server_default=text("3000"))
    max_recipients_per_message: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    # Where mail to postmaster@ and abuse@ of the tenant's domains goes when no alias of that name
    # exists and the domain has no domain admin (full admins have no mailbox); empty: refused.
    postmaster_address: Mapped[str] = mapped_column(String(320), server_default=text("''"))

    domains: Mapped[list[Domain]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )
    admins: Mapped[list[Admin]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )
