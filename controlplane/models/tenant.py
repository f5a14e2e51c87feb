from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, String
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

    domains: Mapped[list[Domain]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )
    admins: Mapped[list[Admin]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )
