from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, byte_count, created_at, int_pk

if TYPE_CHECKING:
    from controlplane.models.domain import Domain


def new_storage_key() -> str:
    return uuid.uuid4().hex


class Mailbox(Base):
    """A mailbox: an address that stores mail and can log in.

    Its mail lives under a random storage key, not under its address, so that a
    rename moves no files and a re-created address never sees an old mailbox's mail.
    """

    __tablename__ = "mailbox"
    __table_args__ = (
        UniqueConstraint("domain_id", "local_part"),
        CheckConstraint("quota_bytes > 0", name="quota_positive"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    local_part: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    quota_bytes: Mapped[byte_count]
    display_name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(default=True)
    is_domain_admin: Mapped[bool] = mapped_column(default=False)
    storage_key: Mapped[str] = mapped_column(String(32), unique=True, default=new_storage_key)
    created_at: Mapped[created_at]
    # Messages this mailbox may send per hour; None: its tenant's per-mailbox limit.
    hourly_messages: Mapped[int | None] = mapped_column(Integer)
    # The node that stores its mail; None on a single machine (models/node.py).
    node_id: Mapped[int | None] = mapped_column(ForeignKey("node.id", ondelete="RESTRICT"), index=True)

    domain: Mapped[Domain] = relationship(back_populates="mailboxes")

    @property
    def in_service(self) -> bool:
        """It receives mail and logs in: it, its domain and its tenant are all active (the SQL
        views of migration 0001 are the daemons' copy of this rule)."""
        return self.active and self.domain.in_service

    @property
    def sending_limit(self) -> int:
        """Messages it may send per hour: its own limit, else its tenant's for each mailbox (the
        view mail_send_limits is the sending limits service's copy of this rule)."""
        own = self.hourly_messages
        return own if own is not None else self.domain.tenant.mailbox_hourly_messages

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.name}"
