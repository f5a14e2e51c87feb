from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, created_at, int_pk

if TYPE_CHECKING:
    from controlplane.models.tenant import Tenant


class Admin(Base):
    """A tenant's full admin: a login of its own, separate from any mailbox.

    The platform operator is not a row here: the operator is whoever runs the CLI.
    """

    __tablename__ = "admin"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int_pk]
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    # Base32 RFC 6238 secret; when set, logging in also needs the current code.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at]

    tenant: Mapped[Tenant] = relationship(back_populates="admins")

    @property
    def in_service(self) -> bool:
        """It may log in: it and its tenant are active."""
        return self.active and self.tenant.active
