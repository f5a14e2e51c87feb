"""A mailbox's allow and block lists: senders whose mail is never filed as junk, and senders whose
mail always is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, created_at, int_pk

if TYPE_CHECKING:
    from controlplane.models.mailbox import Mailbox

SENDER_VERDICTS = ("allow", "block")


class SenderRule(Base):
    """One sender on one list of one mailbox. `sender` is an address (`ann@example.com`) or a
    whole domain (`@example.com`); Dovecot reads the lists through the view `mail_sender_lists`
    at each delivery (templates/dovecot/sieve/junk.sieve.j2 applies them)."""

    __tablename__ = "sender_rule"
    __table_args__ = (
        # A sender is on one list at a time: adding it to the other moves it.
        UniqueConstraint("mailbox_id", "sender"),
        CheckConstraint("verdict IN ('allow', 'block')", name="verdict_known"),
        AUTOINCREMENT,
    )

    id: Mapped[int_pk]
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id", ondelete="CASCADE"), index=True)
    sender: Mapped[str] = mapped_column(String(255))
    verdict: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[created_at]

    mailbox: Mapped[Mailbox] = relationship()
