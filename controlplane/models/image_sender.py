"""Senders whose remote images a mailbox's user chose to always see in the webmail."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.models.base import AUTOINCREMENT, Base, created_at, int_pk


class ImageSender(Base):
    """Mail from `sender` (an address) shows its remote images to this mailbox's user at once:
    they told the webmail so on one of that sender's messages."""

    __tablename__ = "image_sender"
    __table_args__ = (UniqueConstraint("mailbox_id", "sender"), AUTOINCREMENT)

    id: Mapped[int_pk]
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    sender: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[created_at]
